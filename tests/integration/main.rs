//! Black-box tests against the real `sipedge` binary on loopback.
//! Each test gets its own 127.x.y.0/24 block, so they run in parallel.

mod support;

mod sip_answers;
mod sipp;

mod caps;
mod capture;
mod carrier;
mod chaos;
mod churn;
mod cluster;
mod cluster_carrier;
mod cluster_events;
mod cluster_ports;
mod control_plane;
mod deploy;
mod drain;
mod durability;
mod early_dialog;
mod failover;
mod flood;
mod hostile;
mod ipv6;
mod kamailio;
mod listeners;
mod numbers;
mod records;
mod redis_cluster;
mod reload;
mod restart;
mod tls;
mod tls_load;
mod torture;
mod weighted;

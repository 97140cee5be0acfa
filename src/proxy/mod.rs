//! The sans-IO proxy core: transactions, dialogs, routing decisions.
pub mod timer;
pub mod txn;

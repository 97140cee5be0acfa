//! Turning fuzz bytes into choices, and a deterministic mutator.

/// Reads choices off the fuzz input; once it runs out, every read is 0, so
/// any input (even empty) is a complete, valid program.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data, pos: 0 }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos = self.pos.saturating_add(1);
        b
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | (u16::from(self.u8()) << 8)
    }

    /// One of `n` choices.
    pub fn pick(&mut self, n: usize) -> usize {
        usize::from(self.u8()) % n.max(1)
    }

    /// Up to `n` raw bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = end;
        &self.data[start..end]
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }
}

/// Deterministic xorshift64* (the replay test and the harnesses need the
/// same sequence on every machine, without a dependency).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a non-zero seed (0 is replaced).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { seed })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// Bytes that matter to a SIP parser.
const SPICE: &[u8] = b"\r\n \t:;,<>\"\\[]%@=/0?";

/// Tokens that matter to a SIP parser, spliced in whole.
const TOKENS: &[&[u8]] = &[
    b"\r\n\r\n",
    b"\r\n ",
    b"Content-Length: 99999999\r\n",
    b"l: 0\r\n",
    b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n",
    b"Route: <sip:192.0.2.1;lr>\r\n",
    b"To: <sip:a@b>;tag=x\r\n",
    b"sip:192.0.2.1:5060",
    b"[2001:db8::1]",
    b"%00",
    b";tag=",
    b";branch=",
    b"SIP/2.0",
    b"4294967296",
];

/// Applies 1..=`max_edits` random edits (byte flips, SIP punctuation,
/// deletions, duplicated spans, SIP tokens) to `m`, in place.
pub fn mutate(m: &mut Vec<u8>, rng: &mut Rng, max_edits: usize) {
    for _ in 0..1 + rng.below(max_edits.max(1)) {
        let at = rng.below(m.len() + 1);
        match rng.below(6) {
            0 if at < m.len() => m[at] = rng.next_u64() as u8,
            1 if at < m.len() => m[at] = SPICE[rng.below(SPICE.len())],
            2 if at < m.len() => {
                let n = 1 + rng.below(8.min(m.len() - at));
                m.drain(at..at + n);
            }
            3 if at < m.len() => {
                let n = 1 + rng.below(32.min(m.len() - at));
                let span: Vec<u8> = m[at..at + n].to_vec();
                let to = rng.below(m.len() + 1);
                m.splice(to..to, span);
            }
            4 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                m.splice(at..at, t.iter().copied());
            }
            _ => m.insert(at, SPICE[rng.below(SPICE.len())]),
        }
    }
}

//! Sync tokens: one position per stream, written `s<pdu>_<account data>_<receipts>_
//! <to-device>_<presence>_<typing>`. The first is the roomserver stream's position (so a
//! token works as `/members?at=`); missing trailing parts read as 0, so `s<pdu>` alone is a
//! token too. The first may be negative: history backfilled from other servers is stored
//! at negative positions, before everything else. Every part but typing is durable; typing positions start at the clock's
//! milliseconds when the node starts, so they only grow across restarts.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The streams a sync token covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stream {
    /// Room events: timeline, state, invites, knocks and leaves (the roomserver stream).
    Pdu,
    AccountData,
    Receipts,
    ToDevice,
    Presence,
    Typing,
}

/// A position in every stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPositions {
    pub pdu: i64,
    pub account_data: i64,
    pub receipts: i64,
    pub to_device: i64,
    pub presence: i64,
    pub typing: i64,
}

impl StreamPositions {
    /// The position of one stream.
    pub fn get(&self, s: Stream) -> i64 {
        match s {
            Stream::Pdu => self.pdu,
            Stream::AccountData => self.account_data,
            Stream::Receipts => self.receipts,
            Stream::ToDevice => self.to_device,
            Stream::Presence => self.presence,
            Stream::Typing => self.typing,
        }
    }

    /// Moves one stream forward (never back).
    pub fn advance(&mut self, s: Stream, position: i64) {
        let p = match s {
            Stream::Pdu => &mut self.pdu,
            Stream::AccountData => &mut self.account_data,
            Stream::Receipts => &mut self.receipts,
            Stream::ToDevice => &mut self.to_device,
            Stream::Presence => &mut self.presence,
            Stream::Typing => &mut self.typing,
        };
        *p = (*p).max(position);
    }

    /// Parses a token; `None` when it is not one of ours.
    pub fn parse(token: &str) -> Option<StreamPositions> {
        let rest = token.strip_prefix('s')?;
        let mut parts = [0i64; 6];
        for (i, part) in rest.split('_').enumerate() {
            if i >= parts.len() {
                return None;
            }
            let n: i64 = part.parse().ok()?;
            // Room events backfilled from other servers sit at negative positions, before
            // everything this server saw happen (`/messages` tokens among them).
            if n < 0 && i > 0 {
                return None;
            }
            parts[i] = n;
        }
        Some(StreamPositions {
            pdu: parts[0],
            account_data: parts[1],
            receipts: parts[2],
            to_device: parts[3],
            presence: parts[4],
            typing: parts[5],
        })
    }
}

impl fmt::Display for StreamPositions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "s{}_{}_{}_{}_{}_{}",
            self.pdu, self.account_data, self.receipts, self.to_device, self.presence, self.typing
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_short_forms_parse() {
        let p = StreamPositions {
            pdu: 7,
            account_data: 3,
            receipts: 2,
            to_device: 9,
            presence: 1,
            typing: 1_700_000_000_000,
        };
        assert_eq!(StreamPositions::parse(&p.to_string()), Some(p));
        let short = StreamPositions::parse("s42").unwrap();
        assert_eq!(short.pdu, 42);
        assert_eq!(short.typing, 0);
        assert_eq!(StreamPositions::parse("s-12_3").unwrap().pdu, -12);
        for bad in ["", "42", "s", "sx_1", "s1_2_3_4_5_6_7", "s1_-1", "t1"] {
            assert_eq!(StreamPositions::parse(bad), None, "{bad}");
        }
    }
}

//! Protected fields (docs/FORMAT.md, "Protected fields and canonical encoding, version 2").
//!
//! A tenant may have `ip_address`, `user_agent`, `changes` and `metadata` encrypted. Such a
//! field is stored as an *envelope*: text that carries a salted commitment to the plaintext and
//! the ciphertext. The event's hash commits to the commitment, never to the plaintext or the
//! ciphertext, so the log verifies with neither: after the key is destroyed (erasure) or the
//! ciphertext is re-encrypted under a new key (rotation), every hash, proof and checkpoint holds.
//!
//! The envelope travels in the field's own column through every tier, the spool and exports, so
//! no store needs a column of its own for it. Its text form has three shapes; only the first is
//! ever written anywhere, the other two exist between a read and its answer:
//!
//! - `sealed.v2:<commitment>:cipher:<key_id>:<index>:<data>` as stored (`<index>`: the blind
//!   index equality filters match, or `-`);
//! - `sealed.v2:<commitment>:open:<salt>:<plaintext>` opened for a reader allowed to see it;
//! - `sealed.v2:<commitment>:erased` or `…:withheld` when it cannot or may not be shown.
//!
//! `<commitment>` and `<salt>` are 64 lowercase hex digits. No plaintext value can begin with
//! [`SEALED_PREFIX`]: `ip_address` must be an IP address, `changes` and `metadata` are JSON text
//! (which never begins with a letter `s`), and `user_agent` refuses the prefix on ingest.

/// The first bytes of every envelope.
pub const SEALED_PREFIX: &str = "sealed.v2:";

/// The index component of an envelope without a blind index.
const NO_INDEX: &str = "-";

/// The fields a tenant may have encrypted, in canonical order.
pub const PROTECTED_FIELDS: [&str; 4] = ["ip_address", "user_agent", "changes", "metadata"];

/// Why an envelope's plaintext is not shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Its key was destroyed: the plaintext no longer exists anywhere.
    Erased,
    /// The reader's access level may not see protected fields.
    Withheld,
}

impl Closed {
    pub fn as_str(self) -> &'static str {
        match self {
            Closed::Erased => "erased",
            Closed::Withheld => "withheld",
        }
    }
}

/// A protected field's envelope, parsed from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed<'a> {
    /// As stored: `data` is the ciphertext (base64url), under the subject key `key_id`;
    /// `index` the keyed blind index of the plaintext, for equality filters (docs/PRIVACY.md).
    Cipher {
        commitment: [u8; 32],
        key_id: &'a str,
        index: Option<&'a str>,
        data: &'a str,
    },
    /// Opened: the plaintext and the salt that opens the commitment.
    Open {
        commitment: [u8; 32],
        salt: [u8; 32],
        plaintext: &'a str,
    },
    /// Not shown, and why.
    Closed {
        commitment: [u8; 32],
        closed: Closed,
    },
}

impl<'a> Sealed<'a> {
    /// The envelope in `text`, or `None` when `text` is a plaintext value. Text that begins with
    /// the prefix and a commitment but whose rest is not one of the three shapes is still an
    /// envelope (its hash needs only the commitment): it reads as [`Closed::Withheld`].
    pub fn parse(text: &'a str) -> Option<Sealed<'a>> {
        let rest = text.strip_prefix(SEALED_PREFIX)?;
        let commitment = hex32(rest.get(..64)?)?;
        let rest = rest.get(64..)?.strip_prefix(':')?;
        let withheld = Sealed::Closed {
            commitment,
            closed: Closed::Withheld,
        };
        Some(match rest {
            "erased" => Sealed::Closed {
                commitment,
                closed: Closed::Erased,
            },
            "withheld" => withheld,
            _ => {
                if let Some(cipher) = rest.strip_prefix("cipher:") {
                    let mut parts = cipher.splitn(3, ':');
                    match (parts.next(), parts.next(), parts.next()) {
                        (Some(key_id), Some(index), Some(data)) => Sealed::Cipher {
                            commitment,
                            key_id,
                            index: (index != NO_INDEX).then_some(index),
                            data,
                        },
                        _ => withheld,
                    }
                } else if let Some(open) = rest.strip_prefix("open:") {
                    match (open.get(..64).and_then(hex32), open.get(64..65)) {
                        (Some(salt), Some(":")) => Sealed::Open {
                            commitment,
                            salt,
                            plaintext: &open[65..],
                        },
                        _ => withheld,
                    }
                } else {
                    withheld
                }
            }
        })
    }

    /// The salted commitment the event's hash covers.
    pub fn commitment(&self) -> [u8; 32] {
        match self {
            Sealed::Cipher { commitment, .. }
            | Sealed::Open { commitment, .. }
            | Sealed::Closed { commitment, .. } => *commitment,
        }
    }

    /// The envelope's text form.
    pub fn to_text(&self) -> String {
        let mut text = String::from(SEALED_PREFIX);
        push_hex(&mut text, &self.commitment());
        match self {
            Sealed::Cipher {
                key_id,
                index,
                data,
                ..
            } => {
                text.push_str(":cipher:");
                text.push_str(key_id);
                text.push(':');
                text.push_str(index.unwrap_or(NO_INDEX));
                text.push(':');
                text.push_str(data);
            }
            Sealed::Open {
                salt, plaintext, ..
            } => {
                text.push_str(":open:");
                push_hex(&mut text, salt);
                text.push(':');
                text.push_str(plaintext);
            }
            Sealed::Closed { closed, .. } => {
                text.push(':');
                text.push_str(closed.as_str());
            }
        }
        text
    }
}

/// The commitment of an envelope, or `None` for a plaintext value: all a hash needs. Reads
/// only the prefix and the commitment (every event's hash asks, so it stops there).
pub fn sealed_commitment(text: &str) -> Option<[u8; 32]> {
    let rest = text.strip_prefix(SEALED_PREFIX)?;
    if rest.as_bytes().get(64) != Some(&b':') {
        return None;
    }
    hex32(&rest[..64])
}

pub(crate) fn push_hex(text: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
}

/// 64 lowercase hex digits as 32 bytes.
pub fn hex32(text: &str) -> Option<[u8; 32]> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let nibble = |digit: u8| match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    };
    let mut bytes = [0u8; 32];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = nibble(digits[index * 2])? << 4 | nibble(digits[index * 2 + 1])?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_round_trips_and_plaintext_is_not_an_envelope() {
        let commitment = [7u8; 32];
        let shapes = [
            Sealed::Cipher {
                commitment,
                key_id: "g1",
                index: Some("0123abcd"),
                data: "AAECAw",
            },
            Sealed::Cipher {
                commitment,
                key_id: "g1",
                index: None,
                data: "AAECAw",
            },
            Sealed::Open {
                commitment,
                salt: [9u8; 32],
                plaintext: "203.0.113.9:with:colons",
            },
            Sealed::Closed {
                commitment,
                closed: Closed::Erased,
            },
            Sealed::Closed {
                commitment,
                closed: Closed::Withheld,
            },
        ];
        for shape in shapes {
            let text = shape.to_text();
            assert_eq!(Sealed::parse(&text), Some(shape), "{text}");
        }
        for plain in ["203.0.113.9", "{\"a\":1}", "sealed.v2:", "Mozilla/5.0"] {
            assert_eq!(Sealed::parse(plain), None, "{plain}");
        }
        // A damaged rest still has its commitment, so the event still hashes.
        let damaged = format!("{SEALED_PREFIX}{}:cipher", "07".repeat(32));
        assert_eq!(sealed_commitment(&damaged), Some(commitment));
        // Upper-case hex is not the canonical spelling: not an envelope.
        let upper = format!("{SEALED_PREFIX}{}:erased", "AB".repeat(32));
        assert_eq!(Sealed::parse(&upper), None);
    }
}

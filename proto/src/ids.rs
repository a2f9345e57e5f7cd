//! Identifier newtypes. Every id that crosses the wire is one of these, never a bare `String`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a string was refused as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    #[error("{kind} is empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {max} characters")]
    TooLong { kind: &'static str, max: usize },
    #[error("{kind} may only contain a-z, 0-9, '-', '_' and '.'")]
    BadCharacter { kind: &'static str },
}

fn validate(kind: &'static str, value: &str, max: usize) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > max {
        return Err(IdError::TooLong { kind, max });
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.');
    if !value.chars().all(allowed) || value.starts_with('.') {
        return Err(IdError::BadCharacter { kind });
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const MAX_LEN: usize = $max;

            /// Validates `value` as this kind of id.
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                validate($kind, &value, $max)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

string_id!(
    /// A room name as it appears in `https://host/<room>`: lower-case, at most 64 characters.
    RoomId, "room name", 64
);
string_id!(
    /// One participant's session in one room; a reconnect after a bridge failure keeps it.
    ParticipantId, "participant id", 64
);
string_id!(
    /// A bridge (SFU) node.
    BridgeId, "bridge id", 64
);
string_id!(
    /// A deployment region, e.g. `eu-west`.
    RegionId, "region", 64
);
string_id!(
    /// A host account's user name (`bridgemesh users add <name>`): lower-case, at most 64 characters.
    HostName, "user name", 64
);

/// An RTP synchronisation source.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ssrc(pub u32);

impl fmt::Display for Ssrc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_are_validated() {
        assert!(RoomId::new("standup-42").is_ok());
        assert!(RoomId::new("a.b_c").is_ok());
        assert_eq!(RoomId::new(""), Err(IdError::Empty { kind: "room name" }));
        assert!(matches!(RoomId::new("Upper"), Err(IdError::BadCharacter { .. })));
        assert!(matches!(RoomId::new("../etc"), Err(IdError::BadCharacter { .. })));
        assert!(matches!(RoomId::new("a/b"), Err(IdError::BadCharacter { .. })));
        assert!(matches!(
            RoomId::new("x".repeat(65)),
            Err(IdError::TooLong { .. })
        ));
    }

    #[test]
    fn ids_deserialize_through_validation() {
        let ok: RoomId = serde_json::from_str("\"daily\"").unwrap();
        assert_eq!(ok.as_str(), "daily");
        assert!(serde_json::from_str::<RoomId>("\"no spaces\"").is_err());
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"daily\"");
    }
}

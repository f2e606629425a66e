//! GB/T 28181 device codes: 20 decimal digits with fixed fields.
//!
//! ```text
//! 3205080101 12 100 0 000003   (spaces added)
//! ├─────┘├┘ ├┘ ├─┘ │ └────┘
//! │      │  │  │   │ serial (6)
//! │      │  │  │   network identifier (1)
//! │      │  │  type code (3), e.g. 121 checkpoint camera, 132 IPC, 140? access
//! │      │  industry code (2), 01 = community/social
//! │      grassroots unit (2)
//! admin region (6): province, city, district
//! ```

use std::fmt;

/// A validated 20-digit GB/T 28181 device code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceCode([u8; 20]);

/// Why a device code was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceCodeError {
    #[error("must be exactly 20 digits, got {0} characters")]
    Length(usize),
    #[error("must be digits only, found {found:?} at position {position}")]
    NotDigit { position: usize, found: char },
}

impl DeviceCode {
    /// Parses a code; surrounding white space is not accepted.
    pub fn parse(s: &str) -> Result<Self, DeviceCodeError> {
        let chars = s.chars().count();
        if chars != 20 {
            return Err(DeviceCodeError::Length(chars));
        }
        let mut out = [0u8; 20];
        for (i, c) in s.chars().enumerate() {
            if !c.is_ascii_digit() {
                return Err(DeviceCodeError::NotDigit {
                    position: i,
                    found: c,
                });
            }
            out[i] = c as u8;
        }
        Ok(DeviceCode(out))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a DeviceCode holds ASCII digits only")
    }
    fn field(&self, from: usize, to: usize) -> &str {
        &self.as_str()[from..to]
    }
    /// Administrative region: province, city, district (digits 1–6), e.g. `320508` (Gusu).
    pub fn admin_region(&self) -> &str {
        self.field(0, 6)
    }
    /// Grassroots unit (digits 7–8).
    pub fn grassroots_unit(&self) -> &str {
        self.field(6, 8)
    }
    /// Industry code (digits 9–10).
    pub fn industry(&self) -> &str {
        self.field(8, 10)
    }
    /// Type code (digits 11–13).
    pub fn type_code(&self) -> &str {
        self.field(10, 13)
    }
    /// Network identifier (digit 14).
    pub fn network(&self) -> &str {
        self.field(13, 14)
    }
    /// Serial number (digits 15–20).
    pub fn serial(&self) -> &str {
        self.field(14, 20)
    }
}

impl fmt::Display for DeviceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for DeviceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceCode({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_of_a_gusu_checkpoint_camera() {
        let d = DeviceCode::parse("32050801011210000003").unwrap();
        assert_eq!(d.admin_region(), "320508");
        assert_eq!(d.grassroots_unit(), "01");
        assert_eq!(d.industry(), "01");
        assert_eq!(d.type_code(), "121");
        assert_eq!(d.network(), "0");
        assert_eq!(d.serial(), "000003");
        assert_eq!(d.to_string(), "32050801011210000003");
    }

    #[test]
    fn rejects_wrong_length_and_non_digits() {
        assert_eq!(
            DeviceCode::parse("3205080101121000000"),
            Err(DeviceCodeError::Length(19))
        );
        assert_eq!(DeviceCode::parse(""), Err(DeviceCodeError::Length(0)));
        assert_eq!(
            DeviceCode::parse("3205080101121000000X"),
            Err(DeviceCodeError::NotDigit {
                position: 19,
                found: 'X'
            })
        );
        // 20 characters but not 20 bytes: full-width digits are not accepted.
        assert_eq!(
            DeviceCode::parse("３２０５０８０１０１１２１００００００３"),
            Err(DeviceCodeError::NotDigit {
                position: 0,
                found: '３'
            })
        );
    }
}

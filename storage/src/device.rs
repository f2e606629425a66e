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
//!
//! [`DeviceCode::parse`] takes any 20 digits (what is stored already is read whatever
//! it is); [`DeviceCode::parse_checked`], for codes being written, also checks the
//! structure: a GB/T 2260 province (digits 1–2) and a GB/T 28181 type code (digits
//! 11–13, Appendix D: 111–130 front-end devices, 131–199 their peripherals, 200–299
//! platform devices, 300–399 centre users, 400–499 terminal users, 500–999 extensions,
//! where GA/T 1400 puts its systems, e.g. 503 a 视图库).

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
    #[error("digits 1-2 ({found}) must be a GB/T 2260 province code (11-15, 21-23, 31-37, 41-46, 50-54, 61-65, 71, 81, 82)")]
    Province { found: String },
    #[error("digits 11-13 ({found}) must be a GB/T 28181 type code (111-999: devices 111-199, platforms 200-299, users 300-499, extensions 500-999)")]
    TypeCode { found: String },
}

/// The province-level codes of GB/T 2260 (the first two digits of a division code).
const PROVINCES: [u8; 34] = [
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52,
    53, 54, 61, 62, 63, 64, 65, 71, 81, 82,
];

/// The lowest GB/T 28181 type code (111: a DVR); below it are none.
const FIRST_TYPE_CODE: u16 = 111;

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

    /// Parses a code being written (a catalog entry, an event): 20 digits, a province
    /// the division code starts with, and a type code GB/T 28181 defines.
    pub fn parse_checked(s: &str) -> Result<Self, DeviceCodeError> {
        let code = Self::parse(s)?;
        code.check_structure()?;
        Ok(code)
    }

    /// Whether the province (digits 1–2) and the type code (digits 11–13) are ones the
    /// standards define.
    pub fn check_structure(&self) -> Result<(), DeviceCodeError> {
        let province = self.field(0, 2);
        let p: u8 = province.parse().expect("two ASCII digits");
        if !PROVINCES.contains(&p) {
            return Err(DeviceCodeError::Province {
                found: province.to_string(),
            });
        }
        let t: u16 = self.type_code().parse().expect("three ASCII digits");
        if t < FIRST_TYPE_CODE {
            return Err(DeviceCodeError::TypeCode {
                found: self.type_code().to_string(),
            });
        }
        Ok(())
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
    fn codes_being_written_need_a_province_and_a_type_code() {
        for good in [
            "32050801011210000003", // a Gusu checkpoint camera
            "11010000002000000001", // a Beijing platform server
            "82000000005030000001", // a Macau 视图库
            "32050801999999999999",
        ] {
            assert!(DeviceCode::parse_checked(good).is_ok(), "{good}");
        }
        for (bad, error) in [
            (
                "00000000000000000000",
                DeviceCodeError::Province { found: "00".into() },
            ),
            (
                "99999999999999999999",
                DeviceCodeError::Province { found: "99".into() },
            ),
            (
                "10050801011210000003",
                DeviceCodeError::Province { found: "10".into() },
            ),
            (
                "32050801010000000003",
                DeviceCodeError::TypeCode {
                    found: "000".into(),
                },
            ),
            (
                "32050801011100000003",
                DeviceCodeError::TypeCode {
                    found: "110".into(),
                },
            ),
        ] {
            assert_eq!(DeviceCode::parse_checked(bad), Err(error.clone()), "{bad}");
            assert!(
                DeviceCode::parse(bad).is_ok(),
                "stored codes are read as they are"
            );
            let message = error.to_string();
            assert!(message.contains("digits"), "{message}");
        }
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

//! The pictures of an uploaded object (`SubImageList.SubImageInfoObject[]`): base64
//! `Data` decoded and checked (JPEG, PNG or BMP, within `max_picture_bytes`), or a
//! `StoragePath` kept as a reference. Stored before the object's event is appended,
//! so an acknowledged object has its pictures on disk; listed on the event as its
//! `images` (the `images` attribute holds them as JSON).

use super::text;
use base64::Engine;
use serde_json::{json, Value};

use crate::params::rfc3339;

/// One picture of an object: its bytes (to store) or a reference, and what the
/// object says of it.
pub(crate) struct Picture {
    pub bytes: Option<Vec<u8>>,
    /// `StoragePath` when the object gives only a URL.
    pub storage_path: Option<String>,
    /// GA/T 1400 `Type` (01 车辆大图, 02 车牌彩色小图, 11 人脸图, 14 场景图 …).
    pub kind: Option<String>,
    pub image_id: Option<String>,
    pub format: Option<String>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub shot_ms: Option<i64>,
}

/// Why a picture was refused (its object is refused with this reason).
#[derive(Debug, thiserror::Error)]
pub(crate) enum PictureError {
    #[error("SubImageInfoObject[{0}].Data is not base64: {1}")]
    NotBase64(usize, base64::DecodeError),
    #[error("SubImageInfoObject[{0}].Data is not a JPEG, PNG or BMP picture")]
    NotAPicture(usize),
    #[error(
        "SubImageInfoObject[{index}].Data is {bytes} bytes; at most {max} (max_picture_bytes)"
    )]
    TooLarge {
        index: usize,
        bytes: usize,
        max: usize,
    },
    #[error("SubImageInfoObject[{0}] has neither Data nor StoragePath")]
    Empty(usize),
    #[error("SubImageList is not a list of SubImageInfoObject")]
    NotAList,
}

/// What a picture's first bytes say it is, as a `Content-Type`.
pub fn content_type(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [0xFF, 0xD8, 0xFF, ..] => Some("image/jpeg"),
        [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some("image/png"),
        [b'B', b'M', ..] => Some("image/bmp"),
        _ => None,
    }
}

fn number(o: &Value, k: &str) -> Option<i64> {
    match super::field(o, k)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The `SubImageList.SubImageInfoObject` entries of an object (a list, or one object
/// standing for a list of one), to change in place.
pub(crate) fn sub_images_mut(o: &mut Value) -> Vec<&mut Value> {
    match o.pointer_mut("/SubImageList/SubImageInfoObject") {
        Some(Value::Array(items)) => items.iter_mut().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => Vec::new(),
    }
}

/// The pictures of object `o`, each checked; the first refusal refuses the object.
pub(crate) fn pictures(o: &Value, max_bytes: usize) -> Result<Vec<Picture>, PictureError> {
    let Some(list) = super::field(o, "SubImageList") else {
        return Ok(Vec::new());
    };
    let items = match super::field(list, "SubImageInfoObject") {
        Some(Value::Array(items)) => items.as_slice(),
        Some(one @ Value::Object(_)) => std::slice::from_ref(one),
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(_) => return Err(PictureError::NotAList),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, p)| picture(i, p, max_bytes))
        .collect()
}

fn picture(index: usize, p: &Value, max_bytes: usize) -> Result<Picture, PictureError> {
    let bytes = match super::field(p, "Data")
        .and_then(Value::as_str)
        .map(str::trim)
    {
        Some(data) if !data.is_empty() => {
            // Base64 grows 4/3: refuse before decoding what cannot fit.
            if data.len() / 4 * 3 > max_bytes + 3 {
                return Err(PictureError::TooLarge {
                    index,
                    bytes: data.len() / 4 * 3,
                    max: max_bytes,
                });
            }
            let bytes = decode(data).map_err(|e| PictureError::NotBase64(index, e))?;
            if bytes.len() > max_bytes {
                return Err(PictureError::TooLarge {
                    index,
                    bytes: bytes.len(),
                    max: max_bytes,
                });
            }
            if content_type(&bytes).is_none() {
                return Err(PictureError::NotAPicture(index));
            }
            Some(bytes)
        }
        _ => None,
    };
    let storage_path = text(p, "StoragePath");
    if bytes.is_none() && storage_path.is_none() {
        return Err(PictureError::Empty(index));
    }
    Ok(Picture {
        bytes,
        storage_path,
        kind: text(p, "Type"),
        image_id: text(p, "ImageID"),
        format: text(p, "FileFormat"),
        width: number(p, "Width"),
        height: number(p, "Height"),
        shot_ms: text(p, "ShotTime").and_then(|t| super::parse_time(&t)),
    })
}

/// Base64 as clients send it: plain, wrapped in lines, or a `data:` URI — and, from
/// some platforms, base64 of a `data:` URI.
fn decode(data: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let engine = &base64::engine::general_purpose::STANDARD;
    let decode = |s: &str| -> Result<Vec<u8>, base64::DecodeError> {
        let s = match s.find(";base64,") {
            Some(i) if s.starts_with("data:") => &s[i + ";base64,".len()..],
            _ => s,
        };
        // Most Data is one unbroken line: decoded as it is, without a scan for line
        // breaks first (each pass over the text is CPU an upload pays); text with
        // whitespace fails that and is decoded without it.
        engine
            .decode(s)
            .or_else(|e| match s.bytes().any(|b| b.is_ascii_whitespace()) {
                true => engine.decode(
                    s.bytes()
                        .filter(|b| !b.is_ascii_whitespace())
                        .collect::<Vec<u8>>(),
                ),
                false => Err(e),
            })
    };
    let bytes = decode(data)?;
    if bytes.starts_with(b"data:") {
        if let Ok(uri) = std::str::from_utf8(&bytes) {
            return decode(uri);
        }
    }
    Ok(bytes)
}

impl Picture {
    /// How an event lists this picture: stored ones by id (`url`: where the API serves
    /// them), references by their URL.
    pub fn listed(&self, id: Option<&str>) -> Value {
        let mut v = json!({});
        if let Some(id) = id {
            v["id"] = id.into();
            v["url"] = format!("/v1/images/{id}").into();
        } else if let Some(path) = &self.storage_path {
            v["url"] = path.clone().into();
        }
        for (k, x) in [
            ("type", &self.kind),
            ("image_id", &self.image_id),
            ("format", &self.format),
        ] {
            if let Some(x) = x {
                v[k] = x.clone().into();
            }
        }
        if let Some(w) = self.width {
            v["width"] = w.into();
        }
        if let Some(h) = self.height {
            v["height"] = h.into();
        }
        if let Some(t) = self.shot_ms {
            v["shot"] = rfc3339(t).into();
        }
        if let Some(b) = &self.bytes {
            v["bytes"] = b.len().into();
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_are_decoded_checked_or_kept_as_references() {
        let jpeg = [0xFFu8, 0xD8, 0xFF, 0xE0, 1, 2, 3];
        let b64 = base64::engine::general_purpose::STANDARD.encode(jpeg);
        let o = json!({"SubImageList": {"SubImageInfoObject": [
            {"Type": "01", "Data": b64, "Width": "1920", "Height": 1080, "ShotTime": "20210901080000"},
            {"Type": "14", "StoragePath": "http://10.0.0.1/a.jpg"}]}});
        let p = pictures(&o, 100).unwrap();
        assert_eq!(p[0].bytes.as_deref(), Some(&jpeg[..]));
        assert_eq!((p[0].width, p[0].height), (Some(1920), Some(1080)));
        assert_eq!(p[1].listed(None)["url"], "http://10.0.0.1/a.jpg");
        assert_eq!(p[0].listed(Some("x.1.8"))["url"], "/v1/images/x.1.8");
        let not_a_picture = json!({"SubImageList": {"SubImageInfoObject": [
            {"Data": base64::engine::general_purpose::STANDARD.encode(b"GIF89a")}]}});
        assert!(matches!(
            pictures(&not_a_picture, 100),
            Err(PictureError::NotAPicture(0))
        ));
        assert!(matches!(
            pictures(&o, 3),
            Err(PictureError::TooLarge { .. })
        ));
        let bad = json!({"SubImageList": {"SubImageInfoObject": [{"Data": "@@@@"}]}});
        assert!(matches!(
            pictures(&bad, 100),
            Err(PictureError::NotBase64(..))
        ));
        assert!(pictures(&json!({}), 100).unwrap().is_empty());
        // A data URI, and base64 of one (seen from platforms), decode to the picture.
        let uri = format!("data:image/jpeg;base64,{b64}");
        let nested = base64::engine::general_purpose::STANDARD.encode(&uri);
        // Wrapped as MIME does (76 a line, CRLF), or with stray spaces and a newline.
        let long: Vec<u8> = [&jpeg[..], &[7u8; 200][..]].concat();
        let long64 = base64::engine::general_purpose::STANDARD.encode(&long);
        let wrapped = long64
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\r\n");
        let o = json!({"SubImageList": {"SubImageInfoObject": [{"Data": wrapped}]}});
        assert_eq!(
            pictures(&o, 1000).unwrap()[0].bytes.as_deref(),
            Some(&long[..])
        );
        let spaced = format!(" {}\n {} ", &b64[..4], &b64[4..]);
        let o = json!({"SubImageList": {"SubImageInfoObject": [{"Data": spaced}]}});
        assert_eq!(
            pictures(&o, 100).unwrap()[0].bytes.as_deref(),
            Some(&jpeg[..])
        );
        for data in [uri.as_str(), nested.as_str()] {
            let o = json!({"SubImageList": {"SubImageInfoObject": [{"Data": data}]}});
            assert_eq!(
                pictures(&o, 100).unwrap()[0].bytes.as_deref(),
                Some(&jpeg[..])
            );
        }
    }
}

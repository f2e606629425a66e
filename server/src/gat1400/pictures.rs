//! The pictures of an uploaded object (`SubImageList.SubImageInfoObject[]`): base64
//! `Data` decoded and checked (JPEG, PNG or BMP, within `max_picture_bytes`), or a
//! `StoragePath` kept as a reference. Stored before the object's event is appended,
//! so an acknowledged object has its pictures on disk; listed on the event as its
//! `images` (the `images` attribute holds them as JSON).

use super::text;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
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
/// standing for a list of one; or `SubImageList` itself an array of them, as
/// nanguantong/gat-1400's types serialize it), to change in place.
pub(crate) fn sub_images_mut(o: &mut Value) -> Vec<&mut Value> {
    let Some(list) = o.get_mut("SubImageList") else {
        return Vec::new();
    };
    match list {
        Value::Array(items) => items.iter_mut().collect(),
        Value::Object(m) => match m.get_mut("SubImageInfoObject") {
            Some(Value::Array(items)) => items.iter_mut().collect(),
            Some(one @ Value::Object(_)) => vec![one],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// The picture entries of an object's `SubImageList` as [`sub_images_mut`] finds them
/// (its `SubImageInfoObject` list or single object, or the list itself an array);
/// `Err` for a `SubImageInfoObject` that is neither.
pub(crate) fn sub_images(o: &Value) -> Result<&[Value], PictureError> {
    let Some(list) = super::field(o, "SubImageList") else {
        return Ok(&[]);
    };
    if let Value::Array(items) = list {
        return Ok(items.as_slice());
    }
    match super::field(list, "SubImageInfoObject") {
        Some(Value::Array(items)) => Ok(items.as_slice()),
        Some(one @ Value::Object(_)) => Ok(std::slice::from_ref(one)),
        None | Some(Value::Null) => Ok(&[]),
        Some(_) => Err(PictureError::NotAList),
    }
}

/// The pictures of object `o`, each checked; the first refusal refuses the object.
pub(crate) fn pictures(o: &Value, max_bytes: usize) -> Result<Vec<Picture>, PictureError> {
    sub_images(o)?
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

/// Base64 of the standard alphabet (RFC 4648 §4), padded or not.
const STANDARD_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Base64 of the URL- and filename-safe alphabet (RFC 4648 §5: `-` and `_`), padded
/// or not.
const URL_SAFE_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Base64 as clients send it: plain, wrapped in lines, or a `data:` URI — and, from
/// some platforms, base64 of a `data:` URI; padded or not, in the standard or the
/// URL-safe alphabet (RFC 4648 §4, §5; Java's `Base64.getUrlEncoder()`, Go's
/// `RawStdEncoding`). Text that is none of these is refused with the standard
/// alphabet's reason.
fn decode(data: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let engine = |s: &[u8]| {
        STANDARD_ANY_PAD.decode(s).or_else(|e| {
            // Only text with a URL-safe character is tried again in that alphabet.
            match s.iter().any(|b| matches!(b, b'-' | b'_')) {
                true => URL_SAFE_ANY_PAD.decode(s).map_err(|_| e),
                false => Err(e),
            }
        })
    };
    let decode = |s: &str| -> Result<Vec<u8>, base64::DecodeError> {
        let s = match s.find(";base64,") {
            Some(i) if s.starts_with("data:") => &s[i + ";base64,".len()..],
            _ => s,
        };
        // Most Data is one unbroken line: decoded as it is, without a scan for line
        // breaks first (each pass over the text is CPU an upload pays); text with
        // whitespace fails that and is decoded without it.
        engine(s.as_bytes()).or_else(|e| match s.bytes().any(|b| b.is_ascii_whitespace()) {
            true => engine(
                &s.bytes()
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

    #[test]
    fn unpadded_and_url_safe_base64_decode_other_text_is_refused() {
        use base64::engine::general_purpose::{
            STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
        };
        // 0xFB 0xFF encode to `+`, `/` (standard) and `-`, `_` (URL-safe); a length
        // that is no multiple of 3 needs padding.
        let jpeg = [0xFFu8, 0xD8, 0xFF, 0xFB, 0xFF, 0xFB, 0xFF, 0xFE];
        for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
            let text = engine.encode(jpeg);
            assert_eq!(decode(&text).unwrap(), jpeg, "{text}");
            // Wrapped, as a data URI, and base64 of one, alike.
            let wrapped = format!("{}\r\n{}", &text[..4], &text[4..]);
            assert_eq!(decode(&wrapped).unwrap(), jpeg, "{wrapped}");
            let uri = format!("data:image/jpeg;base64,{text}");
            assert_eq!(decode(&uri).unwrap(), jpeg, "{uri}");
            assert_eq!(decode(&engine.encode(&uri)).unwrap(), jpeg, "{uri}");
        }
        assert_ne!(STANDARD.encode(jpeg), URL_SAFE.encode(jpeg));
        for bad in ["@@@@", "not*base64!", "A", "AB=C", "+-_/", "AAAA=="] {
            let o = json!({"SubImageList": [{"Data": bad}]});
            let e = pictures(&o, 100).err().unwrap_or_else(|| panic!("{bad}"));
            assert!(matches!(e, PictureError::NotBase64(0, _)), "{bad}: {e}");
            assert!(
                e.to_string().starts_with("SubImageInfoObject[0].Data"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_sub_image_list_given_as_the_array_itself_is_its_pictures() {
        let jpeg = [0xFFu8, 0xD8, 0xFF, 0xE0, 9];
        let data = base64::engine::general_purpose::STANDARD.encode(jpeg);
        let bare = json!({"SubImageList": [
            {"Type": "01", "Data": data}, {"Type": "14", "StoragePath": "http://10.0.0.1/a.jpg"}]});
        let wrapped = json!({"SubImageList": {"SubImageInfoObject": bare["SubImageList"]}});
        for o in [&bare, &wrapped] {
            let p = pictures(o, 100).unwrap();
            assert_eq!(p.len(), 2, "{o}");
            assert_eq!(p[0].bytes.as_deref(), Some(&jpeg[..]));
            assert_eq!(p[1].storage_path.as_deref(), Some("http://10.0.0.1/a.jpg"));
            let mut o = o.clone();
            let entries = sub_images_mut(&mut o);
            assert_eq!(entries.len(), 2);
            assert_eq!(entries[1]["Type"], "14");
        }
        // Nothing there, or nothing of it pictures: none; a SubImageInfoObject that is
        // neither a list nor an object: refused.
        for none in [
            json!({}),
            json!({"SubImageList": []}),
            json!({"SubImageList": null}),
        ] {
            assert!(pictures(&none, 100).unwrap().is_empty(), "{none}");
        }
        let odd = json!({"SubImageList": {"SubImageInfoObject": "x"}});
        assert!(matches!(pictures(&odd, 100), Err(PictureError::NotAList)));
    }
}

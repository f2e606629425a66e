//! Events as the GA/T 1400 (视图库) upload bodies a platform would send.

use sightline_storage::{AttrValue, EventInput};

/// GA/T 1400 plate colour codes (GA 24.8 colours: 1 black, 2 white, 5 blue, 6 yellow,
/// 9 green; 99 other).
fn plate_color_code(color: &str) -> &'static str {
    match color {
        "black" => "1",
        "white" => "2",
        "blue" => "5",
        "yellow" => "6",
        "green" => "9",
        _ => "99",
    }
}

/// `YYYYMMDDhhmmssSSS` in Beijing time, as GA/T 1400 writes times (with milliseconds).
fn gat_time(ts_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ts_ms)
        .map(|t| {
            t.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("+08:00"))
                .format("%Y%m%d%H%M%S%3f")
                .to_string()
        })
        .unwrap_or_default()
}

/// Events as the two GA/T 1400 (视图库) upload bodies a platform would send:
/// `{"MotorVehicleListObject":{"MotorVehicleObject":[…]}}` for vehicle reads and
/// `{"FaceListObject":{"FaceObject":[…]}}` for face reads (access-door reads have no
/// GA/T 1400 object and are left out; a face's feature/archive id goes in `ArchiveID`,
/// the field an upstream platform would fill). Object ids are 48 characters: the device code,
/// a type code (02 vehicle, 06 face), the time to the second and a sequence number.
pub fn to_gat1400(events: &[EventInput]) -> (serde_json::Value, serde_json::Value) {
    let (mut vehicles, mut faces) = (Vec::new(), Vec::new());
    for (n, e) in events.iter().enumerate() {
        let time = gat_time(e.ts_ms);
        let id = |kind: &str| format!("{}{kind}{}{:012}", e.device, &time[..14], n);
        match e.kind.as_str() {
            "vehicle" => {
                let color = match e.attrs.get("plate_color") {
                    Some(AttrValue::Str(c)) => plate_color_code(c),
                    _ => "99",
                };
                let reliability = match e.attrs.get("confidence") {
                    Some(AttrValue::Float(f)) => format!("{}", (f * 100.0).round()),
                    _ => "0".into(),
                };
                vehicles.push(serde_json::json!({
                    "MotorVehicleID": id("02"),
                    "DeviceID": e.device,
                    "TollgateID": e.device,
                    "PassTime": time,
                    "PlateNo": e.subject,
                    "PlateColor": color,
                    "PlateReliability": reliability,
                    "StorageUrl1": format!("http://img.example/{}/{}.jpg", e.device, &time[..14]),
                }));
            }
            "face" => faces.push(serde_json::json!({
                "FaceID": id("06"),
                "DeviceID": e.device,
                "ShotTime": time,
                "FaceAppearTime": time,
                "FaceDisAppearTime": time,
                "ArchiveID": e.subject,
                "SubImageList": {"SubImageInfoObject": [{
                    "ImageID": id("06"),
                    "Type": "11",
                    "StoragePath": format!("http://img.example/{}/{}-face.jpg", e.device, &time[..14]),
                }]},
            })),
            _ => {}
        }
    }
    (
        serde_json::json!({"MotorVehicleListObject": {"MotorVehicleObject": vehicles}}),
        serde_json::json!({"FaceListObject": {"FaceObject": faces}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{to_ndjson, Traffic, TrafficConfig, SEPT_2021};

    #[test]
    fn gat1400_bodies_carry_every_vehicle_and_face_read() {
        let t = Traffic::new(TrafficConfig {
            communities: 2,
            days: 1,
            planted: true,
            ..Default::default()
        });
        let events = t.day_events(0);
        let (v, f) = to_gat1400(&events);
        let vehicles = v["MotorVehicleListObject"]["MotorVehicleObject"]
            .as_array()
            .unwrap();
        let faces = f["FaceListObject"]["FaceObject"].as_array().unwrap();
        let count = |k: &str| events.iter().filter(|e| e.kind == k).count();
        assert_eq!(
            (vehicles.len(), faces.len()),
            (count("vehicle"), count("face"))
        );
        let first = events.iter().find(|e| e.kind == "vehicle").unwrap();
        let obj = &vehicles[0];
        assert_eq!(obj["PlateNo"], first.subject.as_str());
        assert_eq!(obj["MotorVehicleID"].as_str().unwrap().len(), 48);
        assert_eq!(obj["PassTime"].as_str().unwrap().len(), 17);
        assert_eq!(gat_time(SEPT_2021 + 1234), "20210901000001234");
        let line: serde_json::Value = serde_json::from_str(&to_ndjson(first)).unwrap();
        assert_eq!(line["ts"], first.ts_ms);
        assert_eq!(line["subject"], first.subject.as_str());
    }
}

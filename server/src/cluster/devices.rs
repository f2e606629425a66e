//! `sightline cluster gat1400 add|list|remove`: the cluster's devices and their GA/T
//! 1400 digest credentials (PostgreSQL `devices` of the catalog, `gat1400_credentials`),
//! as `PUT /v1/devices/{code}` with a `gat1400` login manages them on `serve` (the same
//! checks: `crate::catalog::DevicePut`; only the password's HA1 is kept). A device's
//! community must be registered, as on `serve`: `--community-name` registers it when
//! it is not. `remove` takes a device's login away (its credential and registration);
//! the device stays, as devices do on `serve`. Every ingest node takes a change within
//! `index.renew_ms`; only PostgreSQL needs to answer.

use std::time::Duration;

use serde_json::json;
use sightline_cluster::meta::{bounded, Meta};
use sightline_cluster::ClusterConfig;

use crate::catalog::DevicePut;

/// A device as `sightline cluster gat1400 add` describes it.
#[derive(clap::Args)]
pub struct NewDevice {
    /// The device's 20-digit GB/T 28181 code (its `DeviceID`).
    pub code: String,
    #[arg(long)]
    pub community: String,
    /// What it is: checkpoint_camera, face_camera, platform, …
    #[arg(long, default_value = "checkpoint_camera")]
    pub kind: String,
    /// Which way its gate faces: in, out or unknown.
    #[arg(long, default_value = "unknown")]
    pub direction: String,
    #[arg(long, default_value = "")]
    pub name: String,
    /// The digest user name (default: the code).
    #[arg(long)]
    pub username: Option<String>,
    /// The digest password (or SIGHTLINE_GAT1400_PASSWORD); none: a device without a
    /// login of its own.
    #[arg(long, env = "SIGHTLINE_GAT1400_PASSWORD")]
    pub password: Option<String>,
    /// The community's name, registering it when it is not registered yet.
    #[arg(long)]
    pub community_name: Option<String>,
    /// For a platform (`--kind platform`): a community it relays cameras into, as
    /// `PREFIX=COMMUNITY` (devices whose code starts with PREFIX; repeatable; the
    /// `relays` of `PUT /v1/devices/{code}`, replacing the platform's). None given:
    /// the platform's relays stay as they are.
    #[arg(long = "relay", value_name = "PREFIX=COMMUNITY")]
    pub relays: Vec<String>,
}

/// What `sightline cluster gat1400` was asked to do.
pub enum DeviceAction {
    /// Add or replace a device (and its credential when a password is given).
    Add(NewDevice),
    List,
    /// Remove a device's GA/T 1400 login: its credential and its registration.
    Remove {
        code: String,
    },
}

/// Does `action` against the cluster's PostgreSQL (creating the tables if this is
/// the first node); what to print on stdout, or why it failed.
pub async fn manage_devices(
    config: &ClusterConfig,
    action: DeviceAction,
) -> Result<String, String> {
    // The arguments first, before anything is asked of PostgreSQL.
    let added = match &action {
        DeviceAction::Add(d) => {
            let mut o = json!({"community": d.community, "device_kind": d.kind,
                               "direction": d.direction, "name": d.name});
            if let Some(password) = &d.password {
                o["gat1400"] = json!({"username": d.username, "password": password});
            }
            if !d.relays.is_empty() {
                let mut relays = serde_json::Map::new();
                for r in &d.relays {
                    let (prefix, community) = r
                        .split_once('=')
                        .ok_or_else(|| format!("--relay {r:?}: expected PREFIX=COMMUNITY"))?;
                    relays.insert(prefix.to_string(), community.into());
                }
                o["relays"] = relays.into();
            }
            // Checked as `PUT /v1/devices/{code}` checks a body, for an unscoped admin
            // (the relays' communities once PostgreSQL is reached, below).
            let caller = crate::auth::Caller::anonymous();
            let fields = DevicePut::read(&d.code, o.to_string().as_bytes(), &caller)
                .and_then(|put| {
                    put.fields_with(&d.code, |v| {
                        crate::gat1400::relay::parse(v, &caller, |_| Ok(true))
                    })
                })
                .map_err(|e| e.to_string())?;
            let (device, login, relays) = fields;
            let credential = login.map(|(username, password)| {
                let username = username.as_deref().unwrap_or(&d.code);
                crate::gat1400::credential(&d.code, username, &password)
            });
            Some((device, credential, relays))
        }
        _ => None,
    };
    let within = Duration::from_secs(10);
    let mut meta = Meta::connect_within(&config.postgres, within)
        .await
        .map_err(|e| format!("the cluster's PostgreSQL: {e}"))?;
    bounded(within, "create the tables", meta.create(config.partitions))
        .await
        .map_err(|e| format!("the cluster's PostgreSQL: {e}"))?;
    let pg = |e: sightline_cluster::ClusterError| e.to_string();
    match action {
        DeviceAction::Add(new) => {
            let (device, credential, relays) = added.expect("parsed above");
            let community = &device.community;
            let registered = bounded(within, "read a community", meta.community(community))
                .await
                .map_err(pg)?;
            match (registered, new.community_name) {
                (Some(_), _) => {}
                (None, Some(name)) => {
                    let c = sightline_storage::Community {
                        code: community.clone(),
                        name,
                        district: String::new(),
                    };
                    bounded(within, "register a community", meta.put_community(&c))
                        .await
                        .map_err(pg)?;
                }
                (None, None) => {
                    return Err(format!(
                        "community {community:?} is not registered; give --community-name to \
                         register it"
                    ))
                }
            }
            // The relays name registered communities, as `serve` checks them.
            if let Some(relays) = &relays {
                let known = bounded(within, "read communities", meta.communities())
                    .await
                    .map_err(pg)?;
                let registered = |c: &str| Ok(known.iter().any(|k| k.code == c));
                let body = serde_json::to_value(relays).expect("a map of strings");
                let admin = crate::auth::Caller::anonymous();
                crate::gat1400::relay::parse(&body, &admin, registered)
                    .map_err(|e| e.to_string())?;
            }
            let put = meta.put_device(&device, relays.as_ref());
            bounded(within, "put a device", put).await.map_err(pg)?;
            if let Some(c) = &credential {
                bounded(within, "put a credential", meta.put_gat1400_credential(c))
                    .await
                    .map_err(pg)?;
            }
            let mut v = crate::catalog::device_json(&device);
            if device.device_kind == "platform" {
                let kept = bounded(within, "read relays", meta.relays(&device.code))
                    .await
                    .map_err(pg)?;
                v["relays"] = serde_json::to_value(kept).expect("a map of strings");
            }
            v["gat1400"] = credential.is_some().into();
            Ok(format!("{v}\n"))
        }
        DeviceAction::List => {
            let devices = bounded(within, "read devices", meta.devices(None))
                .await
                .map_err(pg)?;
            let credentials = bounded(within, "read credentials", meta.gat1400_credentials())
                .await
                .map_err(pg)?;
            let mut out = String::new();
            for d in &devices {
                let mut v = crate::catalog::device_json(d);
                let login = credentials.iter().find(|c| c.code == d.code);
                v["gat1400"] = login.is_some().into();
                if let Some(c) = login {
                    v["gat1400_username"] = c.username.clone().into();
                }
                // A platform's relays, as `add` prints them.
                if d.device_kind == "platform" {
                    let kept = bounded(within, "read relays", meta.relays(&d.code))
                        .await
                        .map_err(pg)?;
                    v["relays"] = serde_json::to_value(kept).expect("a map of strings");
                }
                out.push_str(&format!("{v}\n"));
            }
            Ok(out)
        }
        DeviceAction::Remove { code } => {
            let removed = meta.remove_gat1400_login(&code);
            match bounded(within, "remove a GA/T 1400 login", removed).await {
                Ok(true) => Ok(String::new()),
                Ok(false) => Err(format!("no GA/T 1400 login for {code}")),
                Err(e) => Err(e.to_string()),
            }
        }
    }
}

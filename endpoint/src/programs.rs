// SPDX-License-Identifier: MPL-2.0
//! Programs: a REST API in the shape of the Program entity of the Azure Media Services REST
//! API (v2, "Program" and its `ArchiveWindowLength`), under
//! `/api/Programs`. A program belongs to a channel — here the publishing point whose name is
//! its `ChannelId` — and, while running, records that publishing point's fragments into an
//! archive of its own, within its `ArchiveWindowLength`, served as
//! `/<ManifestName>.ism/` in every output (Smooth `Manifest`, DASH `.mpd`, HLS `.m3u8`).
//!
//! The entity's rules: a new program is `Stopped` (202 Accepted with the entity); it may be
//! updated (204), started (202, to `Starting` then `Running`) or deleted (204) only while
//! `Stopped`, and started only while its channel is running (ingest arriving); it may be
//! stopped (202, to `Stopping` then `Stopped`) only while `Running`. `Name` is required, at
//! most 256 characters of English letters, digits, `-` and space, starting and ending with a
//! letter or digit; `Description` at most 256 characters; `ArchiveWindowLength` is required,
//! PT5M to PT25H. A bad request is answered 400, an unknown id 404, a request the state
//! forbids 409, each with an OData JSON error body.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::clock::{format_duration, parse_duration, utc_ticks, uuid};
use crate::store::Track;

/// How long `Starting` and `Stopping` last before `Running` and `Stopped`.
pub const TRANSITION: Duration = Duration::from_millis(500);

pub const MIN_WINDOW: Duration = Duration::from_secs(5 * 60);
pub const MAX_WINDOW: Duration = Duration::from_secs(25 * 3600);
/// Programs the endpoint holds: each running one keeps an archive, so a client must not be
/// able to create them without end.
pub const MAX_PROGRAMS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramState {
    Stopped,
    Starting,
    Running,
    Stopping,
}

impl ProgramState {
    fn as_str(self) -> &'static str {
        match self {
            ProgramState::Stopped => "Stopped",
            ProgramState::Starting => "Starting",
            ProgramState::Running => "Running",
            ProgramState::Stopping => "Stopping",
        }
    }
}

#[derive(Debug)]
pub struct Program {
    pub id: String,
    pub name: String,
    pub description: String,
    pub channel: String,
    pub asset_id: String,
    pub window: Duration,
    pub manifest_name: String,
    pub created: SystemTime,
    pub modified: SystemTime,
    state: ProgramState,
    /// When a transition (Starting, Stopping) ends.
    until: Option<Instant>,
    /// Its archive: the tracks it recorded, by name.
    pub archive: BTreeMap<String, Track>,
}

impl Program {
    /// The state now, moving on from a transition whose time has come.
    pub fn state(&mut self, now: Instant) -> ProgramState {
        if self.until.is_some_and(|u| now >= u) {
            self.until = None;
            self.state = match self.state {
                ProgramState::Starting => ProgramState::Running,
                ProgramState::Stopping => ProgramState::Stopped,
                s => s,
            };
        }
        self.state
    }

    fn entity(&mut self, base: &str, now: Instant) -> Value {
        let state = self.state(now);
        json!({
            "odata.metadata": format!("{base}/api/$metadata#Programs/@Element"),
            "Id": self.id,
            "Name": self.name,
            "Description": self.description,
            "Created": utc_ticks(self.created),
            "LastModified": utc_ticks(self.modified),
            "ChannelId": self.channel,
            "AssetId": self.asset_id,
            "ArchiveWindowLength": format_duration(self.window),
            "State": state.as_str(),
            "ManifestName": self.manifest_name,
        })
    }
}

/// An answer: status, reason, JSON body (or none).
pub struct Answer {
    pub status: u16,
    pub reason: &'static str,
    pub body: Option<Value>,
}

fn error(status: u16, reason: &'static str, message: impl Into<String>) -> Answer {
    let message = message.into();
    Answer {
        status,
        reason,
        body: Some(json!({ "odata.error": { "code": "", "message": { "lang": "en-US", "value": message } } })),
    }
}

fn ok(status: u16, reason: &'static str, body: Option<Value>) -> Answer {
    Answer { status, reason, body }
}

fn valid_name(n: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    !n.is_empty()
        && n.len() <= 256
        && n.chars().all(|c| alnum(c) || c == '-' || c == ' ')
        && n.chars().next().is_some_and(alnum)
        && n.chars().last().is_some_and(alnum)
}

/// `ArchiveWindowLength` of a request body, checked.
fn window_of(v: &Value) -> Result<Duration, String> {
    let text = v.as_str().ok_or("ArchiveWindowLength must be an ISO 8601 duration string")?;
    let d = parse_duration(text).map_err(|e| format!("ArchiveWindowLength {e}"))?;
    if !(MIN_WINDOW..=MAX_WINDOW).contains(&d) {
        return Err(format!("ArchiveWindowLength {text} is outside PT5M to PT25H"));
    }
    Ok(d)
}

#[derive(Debug, Default)]
pub struct Programs {
    pub by_id: BTreeMap<String, Program>,
}

impl Programs {
    /// Handles `method path` under `/api/`; `channel_running` says whether a publishing point
    /// receives ingest now; `base` is the scheme and host for `odata.metadata`.
    pub fn handle(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
        now: Instant,
        channel_running: &dyn Fn(&str) -> bool,
        base: &str,
    ) -> Answer {
        let path = path.split('?').next().unwrap_or("");
        let rest = path.strip_prefix("/api/Programs").unwrap_or("");
        let parsed = || -> Result<Value, Answer> {
            if body.is_empty() {
                return Ok(json!({}));
            }
            serde_json::from_slice::<Value>(body)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| error(400, "Bad Request", "the body is not a JSON object"))
        };
        // /api/Programs('<id>')[/Start|/Stop]
        let (id, action) = match rest {
            "" => (None, ""),
            r => {
                let Some(inner) = r.strip_prefix("('") else { return error(404, "Not Found", "no such resource") };
                let Some((id, after)) = inner.split_once("')") else { return error(400, "Bad Request", "bad key") };
                (Some(id.to_string()), after)
            }
        };
        match (method, id, action) {
            ("GET", None, "") => {
                let list: Vec<Value> = self.by_id.values_mut().map(|p| p.entity(base, now)).collect();
                ok(
                    200,
                    "OK",
                    Some(json!({ "odata.metadata": format!("{base}/api/$metadata#Programs"), "value": list })),
                )
            }
            ("POST", None, "") => match parsed() {
                Err(a) => a,
                Ok(v) => self.create(&v, now, base),
            },
            (m, Some(id), a) => {
                let Some(p) = self.by_id.get_mut(&id) else {
                    return error(404, "Not Found", format!("no program {id}"));
                };
                let state = p.state(now);
                match (m, a) {
                    ("GET", "") => ok(200, "OK", Some(p.entity(base, now))),
                    ("PATCH" | "PUT" | "MERGE", "") => {
                        if state != ProgramState::Stopped {
                            return error(
                                409,
                                "Conflict",
                                format!("program is {}: update it when Stopped", state.as_str()),
                            );
                        }
                        match parsed() {
                            Err(a) => a,
                            Ok(v) => match update(p, &v) {
                                Err(e) => error(400, "Bad Request", e),
                                Ok(()) => {
                                    p.modified = SystemTime::now();
                                    ok(204, "No Content", None)
                                }
                            },
                        }
                    }
                    ("POST", "/Start") => {
                        if state != ProgramState::Stopped {
                            return error(
                                409,
                                "Conflict",
                                format!("program is {}: start it when Stopped", state.as_str()),
                            );
                        }
                        if !channel_running(&p.channel) {
                            return error(409, "Conflict", format!("channel {} is not running (no ingest)", p.channel));
                        }
                        p.state = ProgramState::Starting;
                        p.until = Some(now + TRANSITION);
                        p.modified = SystemTime::now();
                        ok(202, "Accepted", None)
                    }
                    ("POST", "/Stop") => {
                        if state != ProgramState::Running {
                            return error(
                                409,
                                "Conflict",
                                format!("program is {}: stop it when Running", state.as_str()),
                            );
                        }
                        p.state = ProgramState::Stopping;
                        p.until = Some(now + TRANSITION);
                        p.modified = SystemTime::now();
                        ok(202, "Accepted", None)
                    }
                    ("DELETE", "") => {
                        if state != ProgramState::Stopped {
                            return error(
                                409,
                                "Conflict",
                                format!("program is {}: delete it when Stopped", state.as_str()),
                            );
                        }
                        self.by_id.remove(&id);
                        ok(204, "No Content", None)
                    }
                    _ => error(405, "Method Not Allowed", format!("{m} {path}")),
                }
            }
            (m, None, _) => error(405, "Method Not Allowed", format!("{m} {path}")),
        }
    }

    fn create(&mut self, v: &Value, now: Instant, base: &str) -> Answer {
        if self.by_id.len() >= MAX_PROGRAMS {
            return error(409, "Conflict", format!("at most {MAX_PROGRAMS} programs: delete one first"));
        }
        let name = v.get("Name").and_then(Value::as_str).unwrap_or("");
        if !valid_name(name) {
            return error(
                400,
                "Bad Request",
                "Name is required: up to 256 letters, digits, '-' and ' ', alphanumeric at both ends",
            );
        }
        let description = v.get("Description").and_then(Value::as_str).unwrap_or("");
        if description.len() > 256 {
            return error(400, "Bad Request", "Description is longer than 256 characters");
        }
        let window = match v.get("ArchiveWindowLength").map(window_of) {
            Some(Ok(w)) => w,
            Some(Err(e)) => return error(400, "Bad Request", e),
            None => return error(400, "Bad Request", "ArchiveWindowLength is required"),
        };
        let Some(channel) = v.get("ChannelId").and_then(Value::as_str).filter(|c| !c.is_empty()) else {
            return error(400, "Bad Request", "ChannelId (the publishing point's name) is required");
        };
        if self.by_id.values().any(|p| p.name == name && p.channel == channel) {
            return error(409, "Conflict", format!("the channel already has a program named {name}"));
        }
        let manifest = v.get("ManifestName").and_then(Value::as_str).filter(|m| !m.is_empty());
        let id = format!("nb:pgid:UUID:{}", uuid());
        let created = SystemTime::now();
        let mut p = Program {
            id: id.clone(),
            name: name.to_string(),
            description: description.to_string(),
            channel: channel.to_string(),
            asset_id: v.get("AssetId").and_then(Value::as_str).unwrap_or("").to_string(),
            window,
            manifest_name: manifest.map_or_else(uuid, str::to_string),
            created,
            modified: created,
            state: ProgramState::Stopped,
            until: None,
            archive: BTreeMap::new(),
        };
        let entity = p.entity(base, now);
        self.by_id.insert(id, p);
        ok(202, "Accepted", Some(entity))
    }
}

/// Applies an update body (only the properties the entity lets change).
fn update(p: &mut Program, v: &Value) -> Result<(), String> {
    for (k, val) in v.as_object().into_iter().flatten() {
        match k.as_str() {
            "Name" => {
                let n = val.as_str().filter(|n| valid_name(n)).ok_or("Name is not valid")?;
                p.name = n.to_string();
            }
            "Description" => {
                let d = val.as_str().filter(|d| d.len() <= 256).ok_or("Description is not valid")?;
                p.description = d.to_string();
            }
            "ArchiveWindowLength" => p.window = window_of(val)?,
            "ManifestName" => {
                p.manifest_name = val.as_str().filter(|m| !m.is_empty()).ok_or("ManifestName is not valid")?.to_string()
            }
            "AssetId" => p.asset_id = val.as_str().unwrap_or("").to_string(),
            "Id" | "Created" | "LastModified" | "State" | "ChannelId" | "odata.metadata" => {
                return Err(format!("{k} cannot be changed"));
            }
            other => return Err(format!("unknown property {other}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(p: &mut Programs, m: &str, path: &str, body: &str, now: Instant) -> Answer {
        p.handle(m, path, body.as_bytes(), now, &|c| c == "live", "http://h")
    }

    #[test]
    fn the_state_rules_of_the_entity() {
        let mut p = Programs::default();
        let t0 = Instant::now();
        let a = call(
            &mut p,
            "POST",
            "/api/Programs",
            r#"{"Name":"p1","ChannelId":"live","ArchiveWindowLength":"PT1H"}"#,
            t0,
        );
        assert_eq!(a.status, 202);
        let e = a.body.unwrap();
        assert_eq!(e["State"], "Stopped");
        assert_eq!(e["ArchiveWindowLength"], "PT1H");
        let id = e["Id"].as_str().unwrap().to_string();
        assert!(id.starts_with("nb:pgid:UUID:"));
        let one = format!("/api/Programs('{id}')");
        assert_eq!(call(&mut p, "PATCH", &one, r#"{"ArchiveWindowLength":"PT3H"}"#, t0).status, 204);
        assert_eq!(call(&mut p, "POST", &format!("{one}/Stop"), "", t0).status, 409, "not running");
        assert_eq!(call(&mut p, "POST", &format!("{one}/Start"), "", t0).status, 202);
        assert_eq!(call(&mut p, "GET", &one, "", t0).body.unwrap()["State"], "Starting");
        assert_eq!(call(&mut p, "PATCH", &one, r#"{"Description":"x"}"#, t0).status, 409, "only when stopped");
        assert_eq!(call(&mut p, "DELETE", &one, "", t0).status, 409);
        let t1 = t0 + TRANSITION;
        assert_eq!(call(&mut p, "GET", &one, "", t1).body.unwrap()["State"], "Running");
        assert_eq!(call(&mut p, "POST", &format!("{one}/Start"), "", t1).status, 409);
        assert_eq!(call(&mut p, "POST", &format!("{one}/Stop"), "", t1).status, 202);
        assert_eq!(call(&mut p, "GET", &one, "", t1).body.unwrap()["State"], "Stopping");
        let t2 = t1 + TRANSITION;
        assert_eq!(call(&mut p, "GET", "/api/Programs", "", t2).body.unwrap()["value"][0]["State"], "Stopped");
        assert_eq!(call(&mut p, "DELETE", &one, "", t2).status, 204);
        assert_eq!(call(&mut p, "GET", &one, "", t2).status, 404);
    }

    #[test]
    fn bad_requests() {
        let mut p = Programs::default();
        let t = Instant::now();
        for (body, why) in [
            ("not json", "body"),
            (r#"{"ChannelId":"live","ArchiveWindowLength":"PT1H"}"#, "Name"),
            (r#"{"Name":"-x","ChannelId":"live","ArchiveWindowLength":"PT1H"}"#, "Name"),
            (r#"{"Name":"p","ChannelId":"live","ArchiveWindowLength":"PT4M"}"#, "PT5M"),
            (r#"{"Name":"p","ChannelId":"live","ArchiveWindowLength":"PT26H"}"#, "PT25H"),
            (r#"{"Name":"p","ChannelId":"live","ArchiveWindowLength":"1 hour"}"#, "ISO 8601"),
            (r#"{"Name":"p","ChannelId":"live"}"#, "required"),
            (r#"{"Name":"p","ArchiveWindowLength":"PT1H"}"#, "ChannelId"),
        ] {
            let a = call(&mut p, "POST", "/api/Programs", body, t);
            assert_eq!(a.status, 400, "{body}");
            let msg = a.body.unwrap()["odata.error"]["message"]["value"].as_str().unwrap().to_string();
            assert!(msg.contains(why), "{body}: {msg}");
        }
        let a = call(
            &mut p,
            "POST",
            "/api/Programs",
            r#"{"Name":"p","ChannelId":"other","ArchiveWindowLength":"PT1H"}"#,
            t,
        );
        let id = a.body.unwrap()["Id"].as_str().unwrap().to_string();
        let a = call(&mut p, "POST", &format!("/api/Programs('{id}')/Start"), "", t);
        assert_eq!(a.status, 409, "its channel is not running");
        assert_eq!(call(&mut p, "PATCH", &format!("/api/Programs('{id}')"), r#"{"State":"Running"}"#, t).status, 400);
        assert_eq!(call(&mut p, "GET", "/api/Programs('nope')", "", t).status, 404);
    }
}

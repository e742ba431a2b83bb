// SPDX-License-Identifier: MPL-2.0
//! The properties of CMAF ingest (docs/protocol.md §6): `protocol` chooses it; the others only
//! apply to it. Their defaults are what a user who sets only `location` and `protocol=cmaf`
//! needs: POST, Content-Length for whole segments, prft from the UTC timeline when there is
//! one, a long outage resumed at the live edge, no metadata track unless named.

use gst::glib;
use gst::prelude::*;

/// Which ingest protocol the element speaks (`protocol`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstFmp4IngestProtocol")]
pub enum Protocol {
    /// Smooth Streaming / Azure fragmented MP4 live ingest: one long POST per stream.
    #[default]
    #[enum_value(name = "Smooth Streaming ingest: one long chunked POST to .../Streams(<id>)", nick = "smooth")]
    Smooth = 0,
    /// DASH-IF Live Media Ingest, Interface-1: per track a header, then a request per segment.
    #[enum_value(
        name = "DASH-IF CMAF ingest: per track <location>/Streams(<name>.cmfv|cmfa|cmfm), a request per segment",
        nick = "cmaf"
    )]
    Cmaf = 1,
}

/// The method of CMAF ingest requests (`http-method`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstFmp4IngestHttpMethod")]
pub enum HttpMethod {
    #[default]
    #[enum_value(name = "POST", nick = "post")]
    Post = 0,
    #[enum_value(name = "PUT", nick = "put")]
    Put = 1,
}

/// How CMAF segment bodies are framed (`transfer`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstFmp4IngestTransfer")]
pub enum Transfer {
    /// Content-Length for a whole segment, chunked for one still being produced.
    #[default]
    #[enum_value(name = "Content-Length for whole segments, chunked while produced", nick = "auto")]
    Auto = 0,
    #[enum_value(name = "Always chunked transfer", nick = "chunked")]
    Chunked = 1,
    #[enum_value(name = "Always Content-Length (a segment waits until complete)", nick = "content-length")]
    ContentLength = 2,
}

/// Where a track resumes after an outage longer than three segment durations
/// (`outage-resume`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstFmp4IngestOutageResume")]
pub enum OutageResume {
    #[default]
    #[enum_value(name = "At the live edge: the newest segment, the rest skipped", nick = "live-edge")]
    LiveEdge = 0,
    #[enum_value(name = "Everything the forward buffer kept, in order", nick = "backlog")]
    Backlog = 1,
}

/// The clock of the `prft` boxes (`prft-clock`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstFmp4IngestPrftClock")]
pub enum PrftClock {
    /// The UTC timeline when timestamp-mode=utc (identical in redundant encoders), else the
    /// wall clock.
    #[default]
    #[enum_value(name = "The UTC timeline in utc mode, else the wall clock", nick = "auto")]
    Auto = 0,
    #[enum_value(name = "The segment's own time on the timeline", nick = "timeline")]
    Timeline = 1,
    #[enum_value(name = "The wall clock when the segment was written", nick = "wall-clock")]
    WallClock = 2,
}

pub const DEFAULT_FORBIDDEN_RETRIES: u32 = 3;

/// What the CMAF properties say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmafSettings {
    pub protocol: Protocol,
    pub http_method: HttpMethod,
    pub transfer: Transfer,
    pub low_latency: bool,
    pub video_role: Option<String>,
    pub audio_role: Option<String>,
    pub audio_language: Option<String>,
    pub outage_resume: OutageResume,
    pub forbidden_retries: u32,
    pub metadata_track: Option<String>,
    pub prft_clock: PrftClock,
}

impl Default for CmafSettings {
    fn default() -> Self {
        CmafSettings {
            protocol: Protocol::Smooth,
            http_method: HttpMethod::Post,
            transfer: Transfer::Auto,
            low_latency: false,
            video_role: None,
            audio_role: None,
            audio_language: None,
            outage_resume: OutageResume::LiveEdge,
            forbidden_retries: DEFAULT_FORBIDDEN_RETRIES,
            metadata_track: None,
            prft_clock: PrftClock::Auto,
        }
    }
}

fn string(name: &str, nick: &str, blurb: &str) -> glib::ParamSpec {
    glib::ParamSpecString::builder(name).nick(nick).blurb(blurb).mutable_ready().build()
}

/// The roles of a comma-separated list, trimmed, without empties.
pub fn roles(list: Option<&str>) -> Vec<String> {
    list.unwrap_or("").split(',').map(str::trim).filter(|r| !r.is_empty()).map(str::to_string).collect()
}

impl CmafSettings {
    pub fn properties() -> Vec<glib::ParamSpec> {
        vec![
            glib::ParamSpecEnum::builder_with_default("protocol", Protocol::Smooth)
                .nick("Protocol")
                .blurb(
                    "smooth: Smooth Streaming ingest, location = .../Streams(<id>); cmaf: DASH-IF Live Media Ingest \
                     Interface-1, location = the publishing point (e.g. https://host/channel1/channel1.isml), each \
                     track to <location>/Streams(<name>.cmfv|cmfa|cmfm)",
                )
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder_with_default("http-method", HttpMethod::Post)
                .nick("HTTP method")
                .blurb("cmaf: the method of every request, POST or PUT (DASH-IF ingest makes no difference)")
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder_with_default("transfer", Transfer::Auto)
                .nick("Transfer")
                .blurb(
                    "cmaf: how segment bodies are framed: auto (Content-Length for a whole segment, chunked for \
                     one still produced), chunked, or content-length",
                )
                .mutable_ready()
                .build(),
            glib::ParamSpecBoolean::builder("low-latency")
                .nick("Low latency")
                .blurb(
                    "cmaf: send each segment as it is produced, in CMAF chunks (chunked transfer), one frame \
                     behind the muxer, instead of once complete",
                )
                .default_value(false)
                .mutable_ready()
                .build(),
            string(
                "video-role",
                "Video role",
                "cmaf: DASH roles of the video tracks (urn:mpeg:dash:role:2011, e.g. main), comma-separated, as \
                 kind boxes in their headers; none by default",
            ),
            string(
                "audio-role",
                "Audio role",
                "cmaf: DASH roles of the audio tracks (e.g. main, commentary, description), comma-separated; none \
                 by default",
            ),
            string(
                "audio-language",
                "Audio language",
                "cmaf: language of the audio tracks, ISO 639-2 (eng) or BCP 47 (en-US, in elng); none = the \
                 muxer's",
            ),
            glib::ParamSpecEnum::builder_with_default("outage-resume", OutageResume::LiveEdge)
                .nick("Outage resume")
                .blurb(
                    "cmaf: after an outage longer than three segment durations, resume at the live edge (the rest \
                     is skipped, with a message) or send the whole backlog the forward buffer kept",
                )
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("forbidden-retries")
                .nick("Forbidden retries")
                .blurb("cmaf: 401/403 answers in a row, once the track ran, before the error (with backoff between)")
                .minimum(0)
                .maximum(1000)
                .default_value(DEFAULT_FORBIDDEN_RETRIES)
                .mutable_ready()
                .build(),
            string(
                "metadata-track",
                "Metadata track",
                "cmaf: name of the timed metadata track <location>/Streams(<name>.cmfm) that carries ad signals \
                 (SCTE-35 in emsg); none = no metadata track, ad events are ignored with a warning",
            ),
            glib::ParamSpecEnum::builder_with_default("prft-clock", PrftClock::Auto)
                .nick("prft clock")
                .blurb(
                    "cmaf: the wall-clock time in each segment's prft: auto (the UTC timeline in utc mode, the same \
                     in redundant encoders; else the wall clock), timeline, or wall-clock (latency measurement)",
                )
                .mutable_ready()
                .build(),
        ]
    }

    /// Sets a CMAF property; false when `name` is not one.
    pub fn set(&mut self, name: &str, v: &glib::Value) -> bool {
        let text =
            |v: &glib::Value| v.get::<Option<String>>().expect("type checked upstream").filter(|s| !s.is_empty());
        match name {
            "protocol" => self.protocol = v.get().expect("type checked upstream"),
            "http-method" => self.http_method = v.get().expect("type checked upstream"),
            "transfer" => self.transfer = v.get().expect("type checked upstream"),
            "low-latency" => self.low_latency = v.get().expect("type checked upstream"),
            "video-role" => self.video_role = text(v),
            "audio-role" => self.audio_role = text(v),
            "audio-language" => self.audio_language = text(v),
            "outage-resume" => self.outage_resume = v.get().expect("type checked upstream"),
            "forbidden-retries" => self.forbidden_retries = v.get().expect("type checked upstream"),
            "metadata-track" => self.metadata_track = text(v),
            "prft-clock" => self.prft_clock = v.get().expect("type checked upstream"),
            _ => return false,
        }
        true
    }

    /// A CMAF property's value; `None` when `name` is not one.
    pub fn get(&self, name: &str) -> Option<glib::Value> {
        Some(match name {
            "protocol" => self.protocol.to_value(),
            "http-method" => self.http_method.to_value(),
            "transfer" => self.transfer.to_value(),
            "low-latency" => self.low_latency.to_value(),
            "video-role" => self.video_role.to_value(),
            "audio-role" => self.audio_role.to_value(),
            "audio-language" => self.audio_language.to_value(),
            "outage-resume" => self.outage_resume.to_value(),
            "forbidden-retries" => self.forbidden_retries.to_value(),
            "metadata-track" => self.metadata_track.to_value(),
            "prft-clock" => self.prft_clock.to_value(),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_property_sets_and_reads_back() {
        gst::init().unwrap();
        let mut s = CmafSettings::default();
        for p in CmafSettings::properties() {
            let v = s.get(p.name()).unwrap_or_else(|| panic!("{} reads back", p.name()));
            assert_eq!(v.type_(), p.value_type(), "{}", p.name());
            assert!(s.set(p.name(), &v), "{}", p.name());
        }
        assert_eq!(s, CmafSettings::default());
        assert!(s.set("metadata-track", &"scte35".to_value()));
        assert_eq!(s.metadata_track.as_deref(), Some("scte35"));
        assert!(s.set("metadata-track", &"".to_value()));
        assert_eq!(s.metadata_track, None);
        assert!(!s.set("location", &"x".to_value()));
        assert_eq!(roles(Some(" main, commentary ,,")), ["main", "commentary"]);
        assert!(roles(None).is_empty());
    }
}

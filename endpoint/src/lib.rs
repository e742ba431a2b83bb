// SPDX-License-Identifier: MPL-2.0
//! fmp4ingest's local ingest endpoint, as a library and as the `fmp4ingest-endpoint` binary.
//!
//! It takes Smooth ingest (Azure fragmented MP4 live ingest, MS-SSTR) and CMAF ingest (DASH-IF
//! Live Media Ingest v1.2, Interface-1) for any number of publishing points and streams,
//! keeps a deduplicated timeline per track within an archive window (in memory, and on disk
//! when asked), answers the heartbeats API, runs programs that archive a point, and plays back
//! what was ingested — live or recorded — as Smooth Streaming, DASH and HLS from the same
//! fragments, with the ingested SCTE-35 ad signals as events of each.
//!
//! Modules, from the wire in: [`server`] (hyper) and [`route`]; [`ingest`] (the Smooth and
//! CMAF request readers, and the store side any ingest protocol uses); [`media`] (tracks, init
//! segments, fragments); [`store`] (points, per-track timelines, sources); [`output`] (Smooth,
//! DASH, HLS, their events); [`heartbeats`], [`programs`], [`archive`], [`clock`];
//! [`endpoint`] (the handle).

pub mod archive;
pub mod clock;
pub mod endpoint;
pub mod heartbeats;
pub mod ingest;
pub mod media;
pub mod output;
pub mod programs;
pub mod route;
pub mod server;
pub mod store;

pub use endpoint::{Endpoint, EndpointConfig, TrackStatus};

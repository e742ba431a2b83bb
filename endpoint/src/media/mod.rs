// SPDX-License-Identifier: MPL-2.0
//! The media the endpoint handles, whatever protocol brought it: what a track is
//! ([`meta`]), its init segment for DASH and HLS ([`init`]) and its fragments, checked on
//! arrival and re-wrapped for each output ([`fragment`]).

pub mod fragment;
pub mod init;
pub mod meta;

// SPDX-License-Identifier: MPL-2.0
//! The muxer's bytes as both ingest streams take them in, before they write anything: split
//! into boxes, the moov read once (a repeat with the same tracks is only noted, other tracks are
//! an error), every moof read per track against it, and after the first error nothing more.
//! [`crate::ingest_stream::IngestStream`] (Smooth) and [`crate::cmaf::CmafStream`] (CMAF
//! ingest) differ only in what they make of the movie and of each track's fragments.

use bytes::Bytes;

use crate::bmff::fourcc::codes;
use crate::error::{Error, Result};
use crate::ingest_stream::Notice;
use crate::movie::{MovieInfo, parse_moov};
use crate::splitter::{BoxSplitter, SplitterLimits, Unit};
use crate::track_fragment::{FragmentReader, TrackFragment};

/// The state of the input side of a stream.
#[derive(Debug)]
pub(crate) struct MuxerInput {
    splitter: BoxSplitter,
    /// The reader of the fragments made for the first moov's tracks.
    reader: Option<FragmentReader>,
    failed: bool,
}

impl MuxerInput {
    pub fn new(limits: SplitterLimits) -> Self {
        MuxerInput { splitter: BoxSplitter::new(limits), reader: None, failed: false }
    }
}

/// A stream that takes muxer bytes through a [`MuxerInput`].
pub(crate) trait MuxerStream {
    fn input(&mut self) -> &mut MuxerInput;
    /// The tracks of the stream's first moov, once [`MuxerStream::on_movie`] had them.
    fn movie(&self) -> Option<&MovieInfo>;
    /// The stream's first moov, with its tracks.
    fn on_movie(&mut self, movie: MovieInfo) -> Result<()>;
    fn on_notice(&mut self, notice: Notice);
    /// One track's part of a muxer fragment (never empty).
    fn on_track_fragment(&mut self, fragment: TrackFragment) -> Result<()>;
    /// Every track's part of one muxer fragment was given, those of `track_ids`.
    fn after_fragment(&mut self, _track_ids: &[u32]) {}
}

/// Feeds muxer bytes, with the running time (ns) of the sample they start when known. What was
/// complete before an error stays with the stream; after one the stream takes no more input.
pub(crate) fn push<S: MuxerStream>(stream: &mut S, chunk: Bytes, running_time: Option<u64>) -> Result<()> {
    if stream.input().failed {
        return Err(Error::Poisoned);
    }
    let pushed = stream.input().splitter.push_timed(chunk, running_time);
    let processed = drain(stream);
    let result = pushed.and(processed);
    stream.input().failed = result.is_err();
    result
}

/// The end of the muxer's output: a box left unfinished is an error (none after an earlier one).
pub(crate) fn finish<S: MuxerStream>(stream: &mut S) -> Result<()> {
    let input = stream.input();
    if input.failed { Ok(()) } else { input.splitter.finish() }
}

fn drain<S: MuxerStream>(stream: &mut S) -> Result<()> {
    while let Some(unit) = stream.input().splitter.next_unit() {
        match unit {
            Unit::Init(init) => {
                let movie = parse_moov(&init.moov)?;
                match stream.movie().map(|current| current.same_tracks(&movie)) {
                    Some(true) => stream.on_notice(Notice::RepeatedHeader),
                    Some(false) => return Err(Error::TrackSetChanged),
                    None => {
                        if !movie.ignored.is_empty() {
                            stream.on_notice(Notice::IgnoredTracks(movie.ignored.clone()));
                        }
                        stream.input().reader = Some(FragmentReader::new(&movie));
                        stream.on_movie(movie)?;
                    }
                }
            }
            Unit::Fragment(raw) => {
                let reader = stream.input().reader.as_mut().ok_or(Error::UnexpectedBox {
                    box_type: codes::MOOF,
                    expected: "a moov before the first fragment",
                })?;
                let fragments = reader.read(&raw)?;
                let mut tracks = alloc::vec::Vec::new();
                for tf in fragments {
                    if !tf.samples.is_empty() {
                        tracks.push(tf.track_id);
                        stream.on_track_fragment(tf)?;
                    }
                }
                stream.after_fragment(&tracks);
            }
            Unit::Skipped { .. } => {}
        }
    }
    Ok(())
}

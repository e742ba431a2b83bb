// SPDX-License-Identifier: MPL-2.0
//! ISO BMFF (ISO/IEC 14496-12) box reading and writing: the mechanics shared by every box.

pub mod fourcc;
mod reader;
pub mod writer;

pub use fourcc::FourCC;
pub use reader::{BoxHeader, BoxRef, Boxes, MAX_DEPTH, Reader};

//! What netwatch's own object stores (`sftp`, `gcs::json`) answer alike.

use std::ops::Range;

use bytes::Bytes;
use futures::{stream::BoxStream, StreamExt};
use object_store::{Error, GetResult, GetResultPayload, ObjectMeta, Result};

/// A read's answer: `range` of the object `meta` describes, as `payload` streams it.
pub(crate) fn streamed(
    payload: BoxStream<'static, Result<Bytes>>,
    meta: ObjectMeta,
    range: Range<u64>,
) -> GetResult {
    GetResult {
        payload: GetResultPayload::Stream(payload),
        meta,
        range,
        attributes: Default::default(),
        extensions: Default::default(),
    }
}

/// What netwatch never asks of a mirror (multipart uploads, copies, conditional puts).
pub(crate) fn not_implemented(operation: &str, store: &str) -> Error {
    Error::NotImplemented {
        operation: operation.into(),
        implementer: store.into(),
    }
}

/// A HEAD's answer: the object's metadata, no bytes.
pub(crate) fn head(meta: ObjectMeta) -> GetResult {
    let whole = 0..meta.size;
    streamed(futures::stream::empty().boxed(), meta, whole)
}

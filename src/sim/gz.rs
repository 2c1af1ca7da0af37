//! Request bodies as the receivers read them: gunzipped when the client says so, borrowed
//! otherwise.

use std::borrow::Cow;
use std::io::Read;

/// `wire` itself, or its gzip decoding cut after `limit` bytes (so a caller comparing the
/// length with its own limit sees an over-long body without decoding all of it).
pub(crate) fn body(wire: &[u8], gzipped: bool, limit: u64) -> std::io::Result<Cow<'_, [u8]>> {
    if !gzipped {
        // The receivers only read the body: copying it cost a full pass over every request.
        return Ok(Cow::Borrowed(wire));
    }
    // Sized from the gzip trailer's ISIZE (the length mod 2^32) so the buffer does not grow
    // by doubling and copying; only a hint, capped by the limit and by deflate's best ratio
    // (about 1032:1) so a forged trailer cannot make it allocate much.
    let isize = wire
        .len()
        .checked_sub(4)
        .and_then(|at| wire.get(at..))
        .and_then(|t| <[u8; 4]>::try_from(t).ok())
        .map_or(0, |t| u64::from(u32::from_le_bytes(t)));
    let hint = isize.min(limit).min(wire.len() as u64 * 1032);
    let mut out = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
    flate2::read::GzDecoder::new(wire)
        .take(limit)
        .read_to_end(&mut out)?;
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn decodes_borrows_and_limits() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let z = gzip(&data);
        assert_eq!(body(&z, true, u64::MAX).unwrap().as_ref(), &data[..]);
        assert_eq!(body(&z, true, 1000).unwrap().len(), 1000);
        assert!(matches!(body(&data, false, 10).unwrap(), Cow::Borrowed(_)));
        assert!(body(b"not gzip", true, 100).is_err());
        // A trailer claiming 4 GiB only costs a capped hint.
        let mut forged = z.clone();
        let n = forged.len();
        forged[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            body(&forged, true, u64::MAX).is_err(),
            "the size check still fails it"
        );
    }
}

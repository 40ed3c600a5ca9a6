//! Which log records still matter: live messages and pins counted per bucket of records, so
//! compaction knows the oldest record anybody needs.
//!
//! **Invariant:** a segment is deleted only when no live message, unresolved prepare or
//! unfinished queue deletion needs a record in it.

use std::collections::BTreeMap;

use crate::storage::wal::Lsn;

/// How many live things each bucket of records keeps alive: messages they put that are still in
/// a queue, and pins (an unresolved prepare, a queue deletion not yet out of the catalog). A
/// record below the first bucket with a count is needed by nobody.
///
/// A bucket is a run of consecutive records of about [`Live::bucket_bytes`] (a sixty-fourth of
/// a segment), named by its first LSN. Counting by bucket rather than by record keeps this small
/// with millions of one-message records, and a bucket is a small part of a segment, so
/// segments can go as soon as with exact counts.
pub(crate) struct Live {
    /// Live things per bucket, by the bucket's first LSN.
    pub(super) counts: BTreeMap<Lsn, u64>,
    /// The first LSN of every bucket that may still count something, ascending.
    starts: std::collections::VecDeque<Lsn>,
    /// Record bytes in the last bucket so far.
    filling: u64,
    bucket_bytes: u64,
}

impl Live {
    pub(crate) fn new(segment_size: u64) -> Live {
        Live {
            counts: BTreeMap::new(),
            starts: std::collections::VecDeque::new(),
            filling: 0,
            bucket_bytes: (segment_size / 64).max(1),
        }
    }

    /// Record `lsn` of `bytes` was written (LSNs in increasing order).
    pub(crate) fn wrote(&mut self, lsn: Lsn, bytes: u64) {
        if self.starts.is_empty() || self.filling >= self.bucket_bytes {
            self.starts.push_back(lsn);
            self.filling = 0;
        }
        self.filling += bytes;
    }

    /// The first LSN of the bucket holding `lsn`.
    pub(super) fn bucket_of(&self, lsn: Lsn) -> Lsn {
        let i = self.starts.partition_point(|&s| s <= lsn);
        i.checked_sub(1).map_or(0, |i| self.starts[i])
    }

    /// The first LSN of the first bucket that starts at or after `lsn` (`None`: the last bucket
    /// holds `lsn`).
    pub(super) fn bucket_end(&self, lsn: Lsn) -> Option<Lsn> {
        let i = self.starts.partition_point(|&s| s < lsn);
        self.starts.get(i).copied()
    }

    /// Nothing below `bound` will be counted again: drops the buckets wholly before it.
    pub(super) fn forget_before(&mut self, bound: Lsn) {
        let i = self.starts.partition_point(|&s| s <= bound);
        if i > 1 {
            self.starts.drain(..i - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Live;

    #[test]
    pub(super) fn buckets_follow_record_bytes_not_record_counts() {
        // 64 MiB segments: buckets of 1 MiB.
        let mut live = Live::new(64 << 20);
        for lsn in 1..=100 {
            live.wrote(lsn, 1 << 20);
        }
        // Big records (large transactions) get a bucket each, so one live message in record 57
        // keeps nothing before it alive.
        assert_eq!(live.bucket_of(57), 57);
        for lsn in 101..=10_100 {
            live.wrote(lsn, 100);
        }
        // Small records share one: ten thousand 100-byte records fit in 1 MiB.
        assert_eq!(live.bucket_of(101), 101);
        assert_eq!(live.bucket_of(10_100), 101);
        live.forget_before(5_000);
        assert_eq!(live.bucket_of(5_000), 101);
        assert_eq!(
            live.starts.len(),
            1,
            "buckets wholly below the bound are gone"
        );
    }

    #[test]
    pub(super) fn a_segment_end_rounds_up_to_the_end_of_its_bucket() {
        // 64 KiB segments: buckets of 1 KiB; records of 600 bytes, two a bucket.
        let mut live = Live::new(64 << 10);
        for lsn in 1..=10 {
            live.wrote(lsn, 600);
        }
        // Buckets start at 1, 3, 5, 7, 9. A segment ending before record 4 ends, for
        // compaction, where the bucket holding record 3 ends.
        assert_eq!(live.bucket_end(4), Some(5));
        assert_eq!(live.bucket_end(5), Some(5));
        assert_eq!(live.bucket_end(10), None);
    }
}

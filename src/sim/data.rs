//! Deterministic synthetic traffic: which requests a site saw in a given minute.
//!
//! Nothing here is stored: every minute's requests are recomputed on demand from
//! `(seed, corp, site, minute, k)`, so a 24-hour window costs no memory and two simulators with
//! the same seed serve byte-identical data. The per-minute *count* is O(1) to compute, which lets
//! the pager find a page by prefix sums without materialising the whole window.
//!
//! The request objects themselves are built in [`super::events`].

use super::events::{Profile, profile};

/// SplitMix64 finaliser: a cheap, well-mixed 64-bit hash step.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a over the bytes, then mixed: stable across Rust versions, unlike `DefaultHasher`.
pub(crate) fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    mix(h)
}

/// A tiny deterministic PRNG (SplitMix64). Our own rather than `rand`'s so that the generated
/// data never changes when a dependency changes its sampling algorithms.
#[derive(Clone, Debug)]
pub(crate) struct Rng64(u64);

impl Rng64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n == 0` gives 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One element of a non-empty slice.
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        // Callers only pass constant, non-empty tables.
        &items[self.below(items.len() as u64) as usize]
    }

    /// Fisher-Yates shuffle.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// Salts so that independent decisions about one minute draw from independent streams.
const SALT_COUNT: u64 = 0x0C0F_FEE0;
const SALT_SECONDS: u64 = 0x5EC0_4D50;
const SALT_ORDER: u64 = 0x0D0E_4DE4;
const SALT_DUPS: u64 = 0x0D0B_1E50;
const SALT_EVENT: u64 = 0x0E7E_4701;

/// One site as the generator sees it.
#[derive(Clone, Debug)]
pub(crate) struct SiteInfo {
    /// API name (`www`): what the URL path uses.
    pub(crate) name: String,
    /// Human name (`WWW Production`): what the dashboard shows, and what must *not* work in URLs.
    pub(crate) display_name: String,
    /// Virtual host for `serverName` (`www.example.com`).
    pub(crate) server_name: String,
    /// Position in the config; part of every id so ids never collide across sites.
    pub(crate) index: u8,
    /// Whether this site serves an API (JSON paths) rather than a web shop.
    pub(crate) is_api: bool,
    /// Per-site hash key derived from seed, corp and site name.
    pub(crate) key: u64,
}

/// The deterministic source of all traffic in the simulator.
#[derive(Clone, Debug)]
pub(crate) struct Generator {
    pub(crate) sites: Vec<SiteInfo>,
    rate_per_min: u32,
    duplicate_ratio: f64,
    shuffle: bool,
    /// Seed- and corp-dependent middle part of every id.
    id_key: u64,
}

/// The requests of one (site, minute), laid out for emission.
#[derive(Clone, Debug)]
pub(crate) struct MinuteLayout {
    /// Unix second of the minute's start.
    pub(crate) minute: i64,
    /// `seconds[k]`: second within the minute of request `k`; non-decreasing in `k`.
    pub(crate) seconds: Vec<u8>,
    /// Emission order of the `k`s (a permutation; shuffled unless `shuffle` is off).
    pub(crate) order: Vec<u32>,
    /// The `k`s re-emitted after the *next* minute's requests (the feed's duplicates).
    pub(crate) dups: Vec<u32>,
    hash: u64,
}

/// A reference to one generated request: enough to build it or to test it against a filter.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EventRef {
    pub(crate) minute: i64,
    pub(crate) k: u32,
    pub(crate) second: u8,
    pub(crate) hash: u64,
    /// Seed for the counter part of the id.
    counter_base: u32,
}

impl Generator {
    pub(crate) fn new(
        seed: u64,
        corp: &str,
        sites: &[String],
        rate_per_min: u32,
        duplicate_ratio: f64,
        shuffle: bool,
    ) -> Self {
        let corp_key = mix(mix(seed) ^ hash_str(corp).rotate_left(17));
        let sites = sites
            .iter()
            .enumerate()
            .map(|(i, name)| SiteInfo {
                name: name.clone(),
                display_name: format!("{} Production", name.to_uppercase()),
                server_name: format!("{name}.example.com"),
                // More than 256 sites would share the id's site byte; irrelevant for a simulator.
                index: (i % 256) as u8,
                is_api: name.contains("api"),
                key: mix(corp_key ^ hash_str(name)),
            })
            .collect();
        Self {
            sites,
            rate_per_min,
            duplicate_ratio: duplicate_ratio.clamp(0.0, 1.0),
            shuffle,
            id_key: mix(corp_key ^ 0x1D),
        }
    }

    pub(crate) fn site(&self, name: &str) -> Option<&SiteInfo> {
        self.sites.iter().find(|s| s.name == name)
    }

    fn minute_hash(site: &SiteInfo, minute: i64) -> u64 {
        mix(site.key ^ mix(minute as u64))
    }

    /// How many requests the site saw in `minute`: around `rate_per_min` (0.5x..1.5x), and now
    /// and then a quiet minute with none, so clients meet empty minutes. O(1).
    pub(crate) fn count(&self, site: &SiteInfo, minute: i64) -> u32 {
        let mut r = Rng64::new(Self::minute_hash(site, minute) ^ SALT_COUNT);
        let rate = u64::from(self.rate_per_min);
        if rate == 0 || r.chance(0.02) {
            return 0;
        }
        let n = r.range(rate / 2, rate + rate / 2);
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// How many of `minute`'s requests are served a second time after the next minute. O(1).
    pub(crate) fn dup_count(&self, site: &SiteInfo, minute: i64) -> u32 {
        let n = self.count(site, minute);
        let mut r = Rng64::new(Self::minute_hash(site, minute) ^ SALT_DUPS);
        // Stochastic rounding keeps the long-run share equal to the ratio even for small n.
        let d = (f64::from(n) * self.duplicate_ratio + r.unit()).floor();
        (d as u32).min(n)
    }

    /// Everything about one minute needed to emit it. O(n log n) in the minute's count.
    pub(crate) fn layout(&self, site: &SiteInfo, minute: i64) -> MinuteLayout {
        let hash = Self::minute_hash(site, minute);
        let n = self.count(site, minute);
        let mut r = Rng64::new(hash ^ SALT_SECONDS);
        let mut seconds: Vec<u8> = (0..n).map(|_| r.below(60) as u8).collect();
        seconds.sort_unstable();
        let mut order: Vec<u32> = (0..n).collect();
        if self.shuffle {
            Rng64::new(hash ^ SALT_ORDER).shuffle(&mut order);
        }
        let d = self.dup_count(site, minute) as usize;
        let mut pool: Vec<u32> = (0..n).collect();
        // A separate stream from `order`, so duplicates are not simply the first ones served.
        let mut r = Rng64::new(hash ^ SALT_DUPS ^ 0xFF);
        r.shuffle(&mut pool);
        pool.truncate(d);
        MinuteLayout {
            minute,
            seconds,
            order,
            dups: pool,
            hash,
        }
    }

    /// The id of a request: MongoDB-ObjectId-shaped like the real ones (4-byte timestamp,
    /// 5-byte "machine" part, 3-byte counter). Unique by construction: the timestamp separates
    /// minutes, the last machine byte is the site's index, the counter separates `k`s.
    pub(crate) fn id(&self, site: &SiteInfo, ev: &EventRef) -> String {
        let id = self.id_bytes(site, ev);
        String::from_utf8_lossy(&id).into_owned()
    }

    /// [`Generator::id`] as ASCII bytes, without allocating (the feed writes one per record).
    pub(crate) fn id_bytes(&self, site: &SiteInfo, ev: &EventRef) -> [u8; 24] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let ts = u64::from((ev.minute + i64::from(ev.second)) as u32);
        let machine = (self.id_key & 0xFF_FFFF_FF00) | u64::from(site.index);
        let counter = u64::from(ev.counter_base.wrapping_add(ev.k) & 0xFF_FFFF);
        let mut out = [0u8; 24];
        let mut at = 0;
        for (value, digits) in [(ts, 8), (machine, 10), (counter, 6)] {
            for k in (0..digits).rev() {
                out[at] = HEX[((value >> (4 * k)) & 0xF) as usize];
                at += 1;
            }
        }
        out
    }

    /// Whether request `ev` passes a `tags` filter (`None` = no filter).
    pub(crate) fn matches(ev: &EventRef, tags: Option<&[String]>) -> bool {
        tags.is_none_or(|wanted| {
            let p: Profile = profile(ev.hash);
            p.tag_types().iter().any(|t| wanted.iter().any(|w| w == t))
        })
    }
}

impl MinuteLayout {
    pub(crate) fn len(&self) -> usize {
        self.seconds.len()
    }

    pub(crate) fn event(&self, k: u32) -> EventRef {
        EventRef {
            minute: self.minute,
            k,
            second: self.seconds.get(k as usize).copied().unwrap_or(0),
            hash: mix(self.hash ^ mix(u64::from(k) ^ SALT_EVENT)),
            counter_base: (self.hash >> 40) as u32,
        }
    }
}

/// A window's emission plan: for each minute, the size of its block (its own requests, then the
/// duplicates of the previous minute). Paging is an offset into the concatenated blocks.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) site: usize,
    pub(crate) from: i64,
    pub(crate) tags: Option<Vec<String>>,
    /// `starts[i]`: offset of minute `i`'s block; the last entry is the total.
    starts: Vec<u64>,
}

impl Plan {
    /// Build the plan for `[from, until)` (both minute-aligned). O(minutes) without a tag filter;
    /// with one, every request's profile is looked at once (still no request is built).
    pub(crate) fn new(
        g: &Generator,
        site_idx: usize,
        from: i64,
        until: i64,
        tags: Option<Vec<String>>,
    ) -> Option<Plan> {
        let site = g.sites.get(site_idx)?;
        let minutes = ((until - from) / 60).max(0);
        let mut starts = Vec::with_capacity(minutes as usize + 1);
        let mut total = 0u64;
        for i in 0..minutes {
            starts.push(total);
            let m = from + i * 60;
            let size = match &tags {
                None => {
                    let prev = if i > 0 { g.dup_count(site, m - 60) } else { 0 };
                    u64::from(g.count(site, m)) + u64::from(prev)
                }
                Some(_) => Self::block(g, site, m, i > 0, tags.as_deref()).len() as u64,
            };
            total += size;
        }
        starts.push(total);
        Some(Plan {
            site: site_idx,
            from,
            tags,
            starts,
        })
    }

    pub(crate) fn total(&self) -> u64 {
        self.starts.last().copied().unwrap_or(0)
    }

    /// One minute's block in emission order: its requests, then the previous minute's
    /// duplicates (only when that minute is inside the window), filtered by tags.
    fn block(
        g: &Generator,
        site: &SiteInfo,
        minute: i64,
        with_prev: bool,
        tags: Option<&[String]>,
    ) -> Vec<EventRef> {
        let cur = g.layout(site, minute);
        let mut out: Vec<EventRef> = cur
            .order
            .iter()
            .map(|&k| cur.event(k))
            .filter(|e| Generator::matches(e, tags))
            .collect();
        if with_prev {
            let prev = g.layout(site, minute - 60);
            out.extend(
                prev.dups
                    .iter()
                    .map(|&k| prev.event(k))
                    .filter(|e| Generator::matches(e, tags)),
            );
        }
        out
    }

    /// The requests at positions `offset..offset+limit`. Only the blocks that overlap the page
    /// are materialised: O(page + minutes).
    pub(crate) fn page(&self, g: &Generator, offset: u64, limit: u64) -> Vec<EventRef> {
        let Some(site) = g.sites.get(self.site) else {
            return Vec::new();
        };
        let end = offset.saturating_add(limit).min(self.total());
        let mut out = Vec::new();
        if offset >= end {
            return out;
        }
        // First block whose end is past `offset`.
        let first = self
            .starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1);
        for i in first..self.starts.len().saturating_sub(1) {
            let (start, stop) = (self.starts[i], self.starts[i + 1]);
            if start >= end {
                break;
            }
            if stop <= offset {
                continue;
            }
            let minute = self.from + i as i64 * 60;
            let block = Self::block(g, site, minute, i > 0, self.tags.as_deref());
            let lo = offset.saturating_sub(start) as usize;
            let hi = ((end - start) as usize).min(block.len());
            out.extend_from_slice(block.get(lo..hi).unwrap_or(&[]));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generator() -> Generator {
        Generator::new(7, "demo", &["www".into(), "api".into()], 60, 0.05, true)
    }

    #[test]
    fn pages_concatenate_to_the_whole_window() {
        let g = generator();
        let from = 1_700_000_040 / 60 * 60;
        let plan = Plan::new(&g, 0, from, from + 1800, None).expect("site 0 exists");
        let all = plan.page(&g, 0, u64::MAX);
        assert_eq!(all.len() as u64, plan.total());
        let mut paged = Vec::new();
        let mut off = 0;
        while off < plan.total() {
            paged.extend(plan.page(&g, off, 37));
            off += 37;
        }
        let site = &g.sites[0];
        let ids = |v: &[EventRef]| v.iter().map(|e| g.id(site, e)).collect::<Vec<_>>();
        assert_eq!(ids(&all), ids(&paged));
    }

    #[test]
    fn ids_are_unique_and_hex() {
        let g = generator();
        let mut seen = std::collections::HashSet::new();
        for site in &g.sites {
            for m in 0..30 {
                let l = g.layout(site, 1_700_000_000 / 60 * 60 + m * 60);
                for k in 0..l.len() as u32 {
                    let id = g.id(site, &l.event(k));
                    assert_eq!(id.len(), 24);
                    assert!(
                        id.bytes()
                            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
                    );
                    assert!(seen.insert(id));
                }
            }
        }
    }
}

//! One agent's compact in-memory index: one bit per dimension and per chunk, which ranks the
//! agent's chunks approximately so that only the best few hundred have to be scored exactly
//! (from their f32 embeddings, read back from PostgreSQL by the caller).
//!
//! A chunk's code is the sign of each component of `R(x − c)`, where `c` is the agent's centre
//! (the mean of a sample of its vectors) and `R` a fixed random rotation padded to a power of
//! two ([`Rotation`]). Centring matters because embeddings share a large common direction (the
//! language itself; for the hashing embedder, frequent trigrams) on which signs taken around
//! zero would spend their bits; the rotation spreads each component over all, so every bit
//! carries about as much of the vector (the RaBitQ recipe). The approximate score of a query
//! `q` is `<Rq, s>·‖y‖₂² / ‖y‖₁` for `y = R(x − c)` and its code `s ∈ {−1, +1}ⁿ`, the RaBitQ
//! estimate of `<q, x − c>`; `<q, c>` is the same for every chunk and does not change the
//! ranking. It is computed with one 256-entry table per code byte, so a chunk costs `n / 8`
//! table look-ups.
//!
//! Memory per chunk at 384 dimensions (padded to 512): 64 bytes of code, 4 of scale and 8 of
//! ids (a document number and the chunk index), plus each document id once — about 76 bytes,
//! where the exact design kept about 2.4 KB (the f32 vector, a 16-bit copy and two strings).

/// Rows used to estimate the centre. The first rows of a load are held as f32 until then, so
/// this also bounds a load's transient memory (1.5 MB at 384 dimensions).
const CENTRE_SAMPLE: usize = 1024;

/// Indexes at least this large are scanned by several threads: a search is latency-bound and
/// the parts are independent. Below it a scan takes about a millisecond, less than a thread.
const PARALLEL_ROWS: usize = 100_000;

/// One agent's chunks, as loaded at one version.
#[derive(Debug)]
pub(super) struct AgentIndex {
    /// `vector_index_versions.version` the rows were read at.
    pub(super) version: i64,
    /// Length of every vector of the index (0 when it is empty).
    pub(super) dimension: usize,
    /// The centre the codes are taken around.
    centre: Vec<f32>,
    /// The rotation applied before taking signs.
    rotation: Rotation,
    /// `rotation.len / 8`.
    bytes_per_row: usize,
    /// Per row, `bytes_per_row` bytes: bit `i % 8` of byte `i / 8` is set when component `i`
    /// of the rotated `x − c` is positive.
    codes: Vec<u8>,
    /// Per row: `‖x − c‖₂² / ‖x − c‖₁`, the factor of the estimate.
    scales: Vec<f32>,
    /// Each document id once.
    documents: Vec<Box<str>>,
    /// Per row: index into `documents`, and the chunk index.
    rows: Vec<(u32, i32)>,
}

impl AgentIndex {
    /// Number of chunks.
    pub(super) fn len(&self) -> usize {
        self.rows.len()
    }

    /// `(document_id, chunk_index)` of a row.
    pub(super) fn id(&self, row: usize) -> (&str, i32) {
        let (document, chunk) = self.rows[row];
        (&self.documents[document as usize], chunk)
    }

    /// Heap bytes held, for the memory budget.
    pub(super) fn heap_bytes(&self) -> usize {
        let strings: usize = self.documents.iter().map(|d| d.len()).sum();
        self.centre.capacity() * 4
            + self.rotation.signs.capacity() * 4
            + self.codes.capacity()
            + self.scales.capacity() * 4
            + self.documents.capacity() * std::mem::size_of::<Box<str>>()
            + strings
            + self.rows.capacity() * std::mem::size_of::<(u32, i32)>()
    }

    /// The `count` rows with the best approximate scores for `query` (of length `dimension`),
    /// best first; every row when `count` is at least `len()`.
    pub(super) fn candidates(&self, query: &[f32], count: usize) -> Vec<usize> {
        let rows = self.len();
        if count == 0 || rows == 0 {
            return Vec::new();
        }
        // `<q, x − c> = <Rq, R(x − c)>` for the orthogonal R.
        let mut rotated = Vec::new();
        self.rotation.apply(query, None, &mut rotated);
        let table = self.lookup_table(&rotated);
        let mut scores = vec![0.0f32; rows];
        let score_range = |first: usize, out: &mut [f32]| {
            let codes = &self.codes[first * self.bytes_per_row..(first + out.len()) * self.bytes_per_row];
            for ((score, code), scale) in
                out.iter_mut().zip(codes.chunks_exact(self.bytes_per_row)).zip(&self.scales[first..])
            {
                let mut sum = 0.0f32;
                for (byte, entries) in code.iter().zip(table.chunks_exact(256)) {
                    sum += entries[usize::from(*byte)];
                }
                *score = sum * scale;
            }
        };
        let threads =
            if rows >= PARALLEL_ROWS { std::thread::available_parallelism().map_or(1, |n| n.get()).min(4) } else { 1 };
        let per = rows.div_ceil(threads);
        std::thread::scope(|scope| {
            let mut parts = scores.chunks_mut(per).enumerate();
            let first = parts.next();
            for (part, out) in parts {
                let score_range = &score_range;
                scope.spawn(move || score_range(part * per, out));
            }
            // The calling thread scores the first part itself.
            if let Some((_, out)) = first {
                score_range(0, out);
            }
        });
        let mut order: Vec<usize> = (0..rows).collect();
        let by_score = |a: &usize, b: &usize| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b));
        if count < rows {
            order.select_nth_unstable_by(count - 1, by_score);
            order.truncate(count);
        }
        order.sort_unstable_by(by_score);
        order
    }

    /// For each code byte, the 256 values of `Σ ±q_i` over its eight components (`+` where the
    /// bit is set): `table[256·j + b]`.
    fn lookup_table(&self, query: &[f32]) -> Vec<f32> {
        let mut table = vec![0.0f32; self.bytes_per_row * 256];
        for (j, entries) in table.chunks_exact_mut(256).enumerate() {
            let part: Vec<f32> = (0..8).map(|t| query.get(8 * j + t).copied().unwrap_or(0.0)).collect();
            entries[0] = -part.iter().sum::<f32>();
            for b in 1..256usize {
                // Setting the lowest bit of `b` turns that component's −q into +q.
                let low = b.trailing_zeros() as usize;
                entries[b] = entries[b & (b - 1)] + 2.0 * part[low];
            }
        }
        table
    }
}

/// Builds an [`AgentIndex`] from rows streamed one at a time, so a load never holds the
/// agent's f32 vectors (only the first [`CENTRE_SAMPLE`] of them, until the centre is known).
#[derive(Debug, Default)]
pub(super) struct IndexBuilder {
    dimension: usize,
    /// Vectors received before the centre was known, row-major.
    pending: Vec<f32>,
    centre: Option<Vec<f32>>,
    rotation: Option<Rotation>,
    /// Scratch space of one rotated vector.
    rotated: Vec<f32>,
    codes: Vec<u8>,
    scales: Vec<f32>,
    documents: Vec<Box<str>>,
    rows: Vec<(u32, i32)>,
}

impl IndexBuilder {
    /// A builder for about `expected_rows` rows (the buffers are reserved once, not doubled).
    pub(super) fn new(expected_rows: usize) -> Self {
        Self { rows: Vec::with_capacity(expected_rows), scales: Vec::with_capacity(expected_rows), ..Self::default() }
    }

    /// The dimension of the first row, 0 before it.
    pub(super) fn dimension(&self) -> usize {
        self.dimension
    }

    /// Adds one chunk. Returns `false`, adding nothing, for a vector whose dimension differs
    /// from the first one's, or an empty one.
    pub(super) fn push(&mut self, document_id: &str, chunk_index: i32, vector: &[f32]) -> bool {
        if vector.is_empty() || (self.dimension != 0 && vector.len() != self.dimension) {
            return false;
        }
        if self.dimension == 0 {
            self.dimension = vector.len();
            let rotation = Rotation::new(self.dimension);
            self.codes.reserve_exact(self.rows.capacity() * rotation.len / 8);
            self.rotation = Some(rotation);
        }
        // Rows arrive ordered by document, so a new document is one that differs from the last.
        if self.documents.last().is_none_or(|last| **last != *document_id) {
            self.documents.push(document_id.into());
        }
        let document = u32::try_from(self.documents.len() - 1).unwrap_or(u32::MAX);
        self.rows.push((document, chunk_index));
        match (&self.centre, &self.rotation) {
            (Some(centre), Some(rotation)) => {
                rotation.apply(vector, Some(centre), &mut self.rotated);
                encode(&self.rotated, &mut self.codes, &mut self.scales);
            }
            _ => {
                self.pending.extend_from_slice(vector);
                if self.rows.len() == CENTRE_SAMPLE {
                    self.settle_centre();
                }
            }
        }
        true
    }

    /// Computes the centre from the pending rows and encodes them.
    fn settle_centre(&mut self) {
        let dimension = self.dimension.max(1);
        let count = self.pending.len() / dimension;
        let mut centre = vec![0.0f32; self.dimension];
        for row in self.pending.chunks_exact(dimension) {
            centre.iter_mut().zip(row).for_each(|(c, x)| *c += x);
        }
        if count > 0 {
            centre.iter_mut().for_each(|c| *c /= count as f32);
        }
        let rotation = self.rotation.get_or_insert_with(|| Rotation::new(self.dimension));
        for row in self.pending.chunks_exact(dimension) {
            rotation.apply(row, Some(&centre), &mut self.rotated);
            encode(&self.rotated, &mut self.codes, &mut self.scales);
        }
        self.pending = Vec::new();
        self.centre = Some(centre);
    }

    /// The finished index, labelled with `version`.
    pub(super) fn finish(mut self, version: i64) -> AgentIndex {
        if self.centre.is_none() {
            self.settle_centre();
        }
        self.codes.shrink_to_fit();
        self.scales.shrink_to_fit();
        self.documents.shrink_to_fit();
        self.rows.shrink_to_fit();
        let rotation = self.rotation.unwrap_or_else(|| Rotation::new(self.dimension));
        AgentIndex {
            version,
            dimension: self.dimension,
            centre: self.centre.unwrap_or_default(),
            bytes_per_row: rotation.len / 8,
            rotation,
            codes: self.codes,
            scales: self.scales,
            documents: self.documents,
            rows: self.rows,
        }
    }
}

/// Appends the code and scale of a rotated, centred vector.
fn encode(rotated: &[f32], codes: &mut Vec<u8>, scales: &mut Vec<f32>) {
    let (mut l1, mut l2) = (0.0f32, 0.0f32);
    for part in rotated.chunks(8) {
        let mut byte = 0u8;
        for (t, d) in part.iter().enumerate() {
            l1 += d.abs();
            l2 += d * d;
            if *d > 0.0 {
                byte |= 1 << t;
            }
        }
        codes.push(byte);
    }
    scales.push(if l1 > 0.0 { l2 / l1 } else { 0.0 });
}

/// A random orthogonal transform, `(H·D₃)(H·D₂)(H·D₁)` on the vector padded with zeros to a
/// power of two (`H` the normalised Walsh–Hadamard transform, `Dᵢ` random signs): it spreads
/// every component over all the others, so that no sign carries much more of the vector than
/// another. Without it the hashing embedder's vectors (a few features per dimension, some
/// dimensions empty) needed four times the candidates for the same recall. It costs
/// `3·n·log₂ n` additions per vector, where a dense rotation would cost `n²`.
#[derive(Debug)]
struct Rotation {
    /// The padded length: a power of two, at least 8.
    len: usize,
    /// `3 × len` signs (±1.0), fixed: every process builds the same rotation.
    signs: Vec<f32>,
}

impl Rotation {
    fn new(dimension: usize) -> Self {
        let len = dimension.next_power_of_two().max(8);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let signs = (0..3 * len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if state >> 63 == 1 { -1.0 } else { 1.0 }
            })
            .collect();
        Self { len, signs }
    }

    /// `out = R(v − centre)`.
    fn apply(&self, v: &[f32], centre: Option<&[f32]>, out: &mut Vec<f32>) {
        out.clear();
        match centre {
            Some(c) => out.extend(v.iter().zip(c).map(|(x, c)| x - c)),
            None => out.extend_from_slice(v),
        }
        out.resize(self.len, 0.0);
        let norm = 1.0 / (self.len as f32).sqrt();
        for signs in self.signs.chunks_exact(self.len) {
            out.iter_mut().zip(signs).for_each(|(x, s)| *x *= s * norm);
            hadamard(out);
        }
    }
}

/// In-place unnormalised fast Walsh–Hadamard transform of a power-of-two-long slice.
fn hadamard(v: &mut [f32]) {
    let mut half = 1;
    while half < v.len() {
        for block in v.chunks_exact_mut(2 * half) {
            let (a, b) = block.split_at_mut(half);
            for (x, y) in a.iter_mut().zip(b.iter_mut()) {
                let (p, q) = (*x, *y);
                *x = p + q;
                *y = p - q;
            }
        }
        half *= 2;
    }
}

/// Exact scores of `candidates` (row, vector) for a unit `query`: the best `k` of at least
/// `min_score`, best first, ties broken by row.
pub(super) fn rescore<'a>(
    query: &[f32],
    candidates: impl IntoIterator<Item = (usize, &'a [f32])>,
    k: usize,
    min_score: f32,
) -> Vec<(usize, f32)> {
    let scored = candidates
        .into_iter()
        .filter(|(_, v)| v.len() == query.len())
        .map(|(row, v)| (row, dot(query, v)))
        .filter(|&(_, score)| score >= min_score)
        .collect();
    best(scored, k)
}

/// The best `k` of `scored`, best first, ties broken by row.
pub(super) fn best(mut scored: Vec<(usize, f32)>, k: usize) -> Vec<(usize, f32)> {
    scored.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.truncate(k);
    scored
}

/// Dot product with eight independent accumulators, which the compiler turns into SIMD.
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reproducible pseudo-random numbers in [−0.5, 0.5).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        }
    }

    fn unit(mut v: Vec<f32>) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    }

    /// `rows` unit vectors sharing a common direction (as embeddings of one language do), in
    /// clusters (documents on one topic), and queries near some of them.
    fn clustered(dim: usize, rows: usize, queries: usize) -> (Vec<f32>, Vec<Vec<f32>>) {
        let mut rng = Rng(7);
        let common: Vec<f32> = (0..dim).map(|_| rng.next()).collect();
        let centres: Vec<Vec<f32>> = (0..rows.div_ceil(50)).map(|_| (0..dim).map(|_| rng.next()).collect()).collect();
        let mut vectors = Vec::with_capacity(rows * dim);
        for r in 0..rows {
            let c = &centres[r / 50];
            vectors.extend(unit((0..dim).map(|i| 1.5 * common[i] + 0.7 * c[i] + rng.next()).collect()));
        }
        let qs = (0..queries)
            .map(|q| {
                let row = &vectors[(q * 37 % rows) * dim..][..dim];
                unit((0..dim).map(|i| row[i] + 0.08 * rng.next() + 0.05 * common[i]).collect())
            })
            .collect();
        (vectors, qs)
    }

    fn build(dim: usize, vectors: &[f32]) -> AgentIndex {
        let mut builder = IndexBuilder::new(vectors.len() / dim);
        for (r, v) in vectors.chunks_exact(dim).enumerate() {
            assert!(builder.push(&format!("doc-{}", r / 10), r as i32, v));
        }
        builder.finish(1)
    }

    fn brute_force(dim: usize, vectors: &[f32], query: &[f32], k: usize, min_score: f32) -> Vec<(usize, f32)> {
        rescore(query, vectors.chunks_exact(dim).enumerate(), k, min_score)
    }

    #[test]
    fn embeddings_round_trip_and_dot_matches_naive() {
        let v: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        assert_eq!(super::super::decode_embedding(&super::super::encode_embedding(&v)), v);
        let w: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let naive: f32 = v.iter().zip(&w).map(|(a, b)| a * b).sum();
        assert!((dot(&v, &w) - naive).abs() < 1e-4);
    }

    #[test]
    fn rescoring_is_sorted_bounded_and_respects_the_floor() {
        let vectors = [1.0, 0.0, 0.0, 1.0, 0.6, 0.8, 0.8, 0.6, -1.0, 0.0];
        let best = brute_force(2, &vectors, &[1.0, 0.0], 3, 0.0);
        assert_eq!(best.iter().map(|b| b.0).collect::<Vec<_>>(), vec![0, 3, 2]);
        let floor = brute_force(2, &vectors, &[1.0, 0.0], 10, 0.7);
        assert_eq!(floor.iter().map(|b| b.0).collect::<Vec<_>>(), vec![0, 3]);
        // A vector of another length (a chunk re-embedded since the load) is never scored.
        assert!(rescore(&[1.0, 0.0], [(0, &[1.0f32][..])], 1, -1.0).is_empty());
    }

    #[test]
    fn candidates_covering_every_row_give_exactly_the_brute_force_top_k() {
        let dim = 48;
        let (vectors, queries) = clustered(dim, 3000, 20);
        let index = build(dim, &vectors);
        for query in &queries {
            let all = index.candidates(query, usize::MAX);
            assert_eq!(all.len(), 3000);
            let rescored = rescore(query, all.iter().map(|&r| (r, &vectors[r * dim..(r + 1) * dim])), 10, -1.0);
            assert_eq!(rescored, brute_force(dim, &vectors, query, 10, -1.0));
        }
    }

    #[test]
    fn oversampled_candidates_recall_the_brute_force_top_10() {
        // 256 candidates (`min_candidates`, the floor of every search) over a corpus much like
        // one agent's: recall@10 must stay at or above 0.98.
        let (dim, rows) = (384, 5000);
        let (vectors, queries) = clustered(dim, rows, 30);
        let index = build(dim, &vectors);
        let (mut found, mut wanted) = (0, 0);
        for query in &queries {
            let picked = index.candidates(query, 256);
            let approximate = rescore(query, picked.iter().map(|&r| (r, &vectors[r * dim..(r + 1) * dim])), 10, -1.0);
            let exact = brute_force(dim, &vectors, query, 10, -1.0);
            wanted += exact.len();
            found += approximate.iter().filter(|hit| exact.contains(hit)).count();
        }
        let recall = found as f64 / wanted as f64;
        assert!(recall >= 0.98, "recall@10 {recall}");
        // Without oversampling the codes alone rank clearly worse: the test can tell.
        let (mut alone, mut total) = (0, 0);
        for query in &queries {
            let picked = index.candidates(query, 10);
            let exact = brute_force(dim, &vectors, query, 10, -1.0);
            total += exact.len();
            alone += exact.iter().filter(|(r, _)| picked.contains(r)).count();
        }
        assert!((alone as f64 / total as f64) < recall, "codes alone {alone}/{total}");
    }

    #[test]
    fn the_builder_keeps_ids_skips_other_dimensions_and_sizes_its_buffers() {
        let mut builder = IndexBuilder::new(3);
        assert!(builder.push("a", 0, &[1.0, 0.0, 0.0]));
        assert!(!builder.push("a", 1, &[1.0, 0.0]), "another dimension is skipped");
        assert!(!builder.push("a", 1, &[]), "an empty embedding is skipped");
        assert!(builder.push("a", 2, &[0.0, 1.0, 0.0]));
        assert!(builder.push("b", 0, &[0.0, 0.0, 1.0]));
        let index = builder.finish(7);
        assert_eq!((index.version, index.dimension, index.len()), (7, 3, 3));
        assert_eq!([index.id(0), index.id(1), index.id(2)], [("a", 0), ("a", 2), ("b", 0)]);
        assert_eq!(index.documents.len(), 2, "each document id is held once");
        assert_eq!(index.candidates(&[0.0, 0.0, 1.0], 1), vec![2]);
        assert!(index.candidates(&[0.0, 0.0, 1.0], 0).is_empty());
        // About 76 bytes per chunk at 384 dimensions, with or without a centre sample's worth.
        for rows in [500, 5000] {
            let (vectors, _) = clustered(384, rows, 0);
            let index = build(384, &vectors);
            let per_chunk = (index.heap_bytes() - 384 * 4 - 3 * 512 * 4) as f64 / rows as f64;
            assert!(per_chunk < 80.0, "{per_chunk} bytes per chunk");
            assert_eq!(index.codes.len(), rows * 64);
        }
    }

    #[test]
    fn the_rotation_is_orthogonal() {
        let rotation = Rotation::new(37);
        assert_eq!(rotation.len, 64);
        let mut rng = Rng(3);
        let (a, b): (Vec<f32>, Vec<f32>) =
            ((0..37).map(|_| rng.next()).collect(), (0..37).map(|_| rng.next()).collect());
        let (mut ra, mut rb) = (Vec::new(), Vec::new());
        rotation.apply(&a, None, &mut ra);
        rotation.apply(&b, Some(&a), &mut rb);
        let a_minus_b: Vec<f32> = b.iter().zip(&a).map(|(x, y)| x - y).collect();
        assert!((dot(&ra, &ra) - dot(&a, &a)).abs() < 1e-4, "lengths are kept");
        assert!((dot(&ra, &rb) - dot(&a, &a_minus_b)).abs() < 1e-4, "angles are kept, the centre is subtracted");
        assert!(ra.iter().filter(|x| x.abs() > 1e-6).count() > 40, "the components are spread: {ra:?}");
    }

    #[test]
    fn a_large_index_is_scanned_in_parts_with_the_same_result() {
        let dim = 16;
        let (vectors, queries) = clustered(dim, PARALLEL_ROWS + 123, 3);
        let index = build(dim, &vectors);
        for query in &queries {
            let picked = index.candidates(query, 50);
            // The same ranking computed row by row, without the parts.
            let mut rotated = Vec::new();
            index.rotation.apply(query, None, &mut rotated);
            let table = index.lookup_table(&rotated);
            let score = |r: usize| {
                index.codes[r * 2..r * 2 + 2]
                    .iter()
                    .zip(table.chunks_exact(256))
                    .map(|(b, t)| t[usize::from(*b)])
                    .sum::<f32>()
                    * index.scales[r]
            };
            let mut all: Vec<usize> = (0..index.len()).collect();
            all.sort_unstable_by(|a, b| score(*b).total_cmp(&score(*a)).then(a.cmp(b)));
            assert_eq!(picked, all[..50]);
        }
    }
}

import Checkpoint
import Numerics

extension Fuser {
    /// The fast path of a plain LoRA fuse into a BF16/F16 safetensors weight: the stored bytes read once into
    /// the output buffer, and per block of rows the Float32 delta formed in a small scratch and added as the
    /// general path (`fuseWeight`) adds it: d = B·A rounded, times s rounded, Σ w_i·d_i, then W + Δ rounded
    /// once to the base dtype (PEFT's merge of a bf16 base, bit for bit). No whole-matrix Float32 copies, so
    /// a 16 GB bf16 base streams without touching 4× its size in fresh memory. nil where it does not apply
    /// (another dtype or store, HiRA, DoRA, fan_in_fan_out or embedding layouts): the general path then.
    static func fuseHalfInPlace(
        _ store: TensorStore, _ name: String, targets: [Target], weights: [Double], allowNonFinite: Bool
    ) throws -> [UInt8]? {
        #if _endian(big)
        return nil  // the stored bytes are little-endian
        #endif
        guard !targets.contains(where: { $0.hira || $0.module.isDora || $0.fanInFanOut || $0.module.isEmbedding }),
            case let .view(view) = try store.entry(name).source, view.dtype == .bf16 || view.dtype == .f16, view.shape.count == 2
        else { return nil }
        let (rows, cols) = (view.shape[0], view.shape[1])
        let bf16 = view.dtype == .bf16
        var bytes = view.readBytes()
        view.release()
        guard bytes.count == rows * cols * 2 else {
            throw MergeError(store.location, "tensor '\(name)': \(bytes.count) bytes where its shape needs \(rows * cols * 2)")
        }
        let block = max(1, min(rows, (1 << 18) / max(1, cols)))
        let blocks = (rows + block - 1) / block
        // Blocks of rows on every core (this runs on the writer's producer thread; BLAS is single-threaded).
        let bad = UnsafeMutablePointer<UInt32>.allocate(capacity: blocks)
        defer { bad.deallocate() }
        bad.initialize(repeating: 0, count: blocks)
        bytes.withUnsafeMutableBytes { raw in
            let w = raw.baseAddress!.assumingMemoryBound(to: UInt16.self)
            Parallel.forEach(blocks, threads: Parallel.cores) { range in
                let pd = UnsafeMutablePointer<Float>.allocate(capacity: block * cols)
                let pt = UnsafeMutablePointer<Float>.allocate(capacity: block * cols)
                defer {
                    pd.deallocate()
                    pt.deallocate()
                }
                for bi in range {
                    let r0 = bi * block
                    let n = min(block, rows - r0) * cols
                    pd.update(repeating: 0, count: n)
                    for t in targets {
                        let m = t.module
                        let (r, s, wt) = (m.rank, Float(m.scaling), Float(weights[t.adapter]))
                        m.b.tensor.data.withUnsafeBufferPointer { b in
                            m.a.tensor.data.withUnsafeBufferPointer { a in
                                BLAS.sgemm(
                                    transA: false, transB: false, m: n / cols, n: cols, k: r, a: b.baseAddress! + r0 * r, lda: r,
                                    b: a.baseAddress!, ldb: cols, c: pt, ldc: cols)
                            }
                        }
                        for j in 0..<n { pd[j] += wt * (s * pt[j]) }
                    }
                    let o = w + r0 * cols
                    var flags: UInt32 = 0
                    if bf16 {
                        for j in 0..<n {
                            let v = Float(bitPattern: UInt32(UInt16(littleEndian: o[j])) << 16) + pd[j]
                            flags |= (v.bitPattern & 0x7f80_0000) == 0x7f80_0000 ? 1 : 0
                            o[j] = Codec.floatToBF16(v).littleEndian
                        }
                    } else {
                        for j in 0..<n {
                            let v = Codec.f16ToFloat(UInt16(littleEndian: o[j])) + pd[j]
                            flags |= (v.bitPattern & 0x7f80_0000) == 0x7f80_0000 ? 1 : 0
                            o[j] = Codec.floatToF16(v).littleEndian
                        }
                    }
                    bad[bi] = flags
                }
            }
        }
        let finite = (0..<blocks).allSatisfy { bad[$0] == 0 }
        guard finite || allowNonFinite else {
            throw MergeError(nil, "fusing into '\(name)' produced NaN or Inf (--allow-nonfinite to write it anyway)")
        }
        return bytes
    }
}

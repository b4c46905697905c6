import ArgumentParser
import CotoCLI
import Foundation
import Numerics

extension Bench {
    /// `coto-bench half-gemm`: what keeping weights in bf16/f16 costs a linear layer. The same random matrix
    /// as owned Float32 and as bf16/f16 bytes used in place (`WeightMatrix`, widened per block), y = x·Wᵀ
    /// timed alternately at several row counts; median and range of each, and the ratio half / Float32.
    struct HalfGemm: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "half-gemm", abstract: "Time x·Wᵀ with W in bf16/f16 (widened per block) against W in Float32.")
        @Option var out = 8192
        @Option(name: .customLong("in")) var inF = 2048
        @Option(parsing: .upToNextOption) var rows: [Int] = [1, 16, 128, 512]
        @Option var dtype = "bf16"
        @Option(name: .customLong("repeat")) var repeatCount = 9
        @Option var threads = 2

        final class Held {
            let bytes: [UInt8]
            init(_ b: [UInt8]) { bytes = b }
        }

        func run() throws {
            guard let dt = DType(userName: dtype), dt == .bf16 || dt == .f16 else {
                throw ValidationError("--dtype must be bf16 or f16")
            }
            Parallel.configure(threads: threads)
            var rng = SeededRNG(seed: 3)
            let values = (0..<(out * inF)).map { _ in rng.uniformFloat() * 0.04 - 0.02 }
            let held = Held(Storage.encode(values, dtype: dt))
            let rounded = held.bytes.withUnsafeBytes { Storage.decode($0, dtype: dt) }
            let full = WeightMatrix(rounded, rows: out, cols: inF)
            let half = held.bytes.withUnsafeBytes { WeightMatrix(mapped: $0, dtype: dt, rows: out, cols: inF, owner: held) }
            guard let half else { throw CommandError("half-gemm", "the buffer is not aligned for \(dtype)") }
            print("coto half-gemm: W \(out)x\(inF) \(dtype), \(threads) threads, OpenBLAS \(BLAS.config); median (min–max) of \(repeatCount)")
            for n in rows {
                let x = (0..<(n * inF)).map { _ in rng.uniformFloat() - 0.5 }
                var y = [Float](repeating: 0, count: n * out)
                func time(_ w: WeightMatrix) -> Double {
                    let t0 = Bench.now()
                    x.withUnsafeBufferPointer { px in y.withUnsafeMutableBufferPointer { w.multiplyTransposed(px.baseAddress!, rows: n, into: $0.baseAddress!) }
                    }
                    return Bench.now() - t0
                }
                _ = (time(full), time(half))
                var tf: [Double] = []
                var th: [Double] = []
                for _ in 0..<repeatCount {
                    tf.append(time(full))
                    th.append(time(half))
                }
                tf.sort()
                th.sort()
                let (mf, mh) = (tf[tf.count / 2], th[th.count / 2])
                let gf = 2 * Double(n * out * inF) / 1e9
                print(
                    String(
                        format: "  rows %4d: f32 %.2f ms (%.2f–%.2f) %.0f GFLOP/s; %@ %.2f ms (%.2f–%.2f) %.0f GFLOP/s; ratio %.2f",
                        n, mf * 1e3, tf.first! * 1e3, tf.last! * 1e3, gf / mf, dtype, mh * 1e3, th.first! * 1e3, th.last! * 1e3, gf / mh, mh / mf))
            }
        }
    }
}

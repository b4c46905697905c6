import Testing
import Foundation
import TestSupport
@testable import Training
@testable import Model
import Checkpoint
import Numerics

/// Every backward against central finite differences on tiny shapes. The forwards run in Float32 (as
/// training does); losses are accumulated and differenced in Float64, with the step measured as the
/// Float32 values actually taken (x+h and x−h rounded), so the quotient carries no step error.
enum FD {
    /// (L(x+h) − L(x−h)) / ((x+h) − (x−h)) for one coordinate, restoring it afterwards.
    static func derivative(_ x0: Float, h: Float, set: (Float) -> Void, _ loss: () -> Double) -> Double {
        let up = x0 + h
        let down = x0 - h
        set(up)
        let lp = loss()
        set(down)
        let lm = loss()
        set(x0)
        return (lp - lm) / (Double(up) - Double(down))
    }

    /// Checks analytic against numeric derivatives: per coordinate |fd − g| <= abs + rel·|g|, where abs is
    /// relative to the largest gradient; returns the largest violation ratio (<= 1 passes).
    static func compare(_ analytic: [Double], _ numeric: [Double], rel: Double = 1e-2, absFraction: Double = 2e-3) -> Double {
        let scale = max(analytic.map(abs).max() ?? 0, 1e-8)
        var worst = 0.0
        for (g, n) in zip(analytic, numeric) { worst = max(worst, abs(g - n) / (absFraction * scale + rel * abs(g))) }
        return worst
    }

    static func random(_ n: Int, _ rng: inout SeededRNG, scale: Float = 1) -> [Float] {
        (0..<n).map { _ in (rng.uniformFloat() * 2 - 1) * scale }
    }

    /// Evenly spread sample of indices (all of them when n <= k).
    static func sample(_ n: Int, _ k: Int) -> [Int] { n <= k ? Array(0..<n) : (0..<k).map { $0 * n / k + (n / k) / 2 } }
}

@Suite struct FiniteDifferenceOpTests {
    @Test func layerNormBackward() {
        var rng = SeededRNG(seed: 1)
        let rows = 3
        let d = 7
        var x = FD.random(rows * d, &rng)
        let w = FD.random(d, &rng).map { $0 + 1.5 }
        let b = FD.random(d, &rng)
        let c = FD.random(rows * d, &rng)
        func forward(_ y: inout [Float], _ xhat: inout [Float], _ rstd: inout [Float]) {
            y.withUnsafeMutableBufferPointer { py in
                xhat.withUnsafeMutableBufferPointer { ph in
                    rstd.withUnsafeMutableBufferPointer { pr in
                        Kernels.layerNormForward(
                            py.baseAddress!, rows: rows, d: d, weight: w, bias: b, eps: 1e-12, xhat: ph.baseAddress!, rstd: pr.baseAddress!)
                    }
                }
            }
        }
        func loss() -> Double {
            var y = x
            var xhat = x
            var rstd = [Float](repeating: 0, count: rows)
            forward(&y, &xhat, &rstd)
            return zip(y, c).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
        var y = x
        var xhat = x
        var rstd = [Float](repeating: 0, count: rows)
        forward(&y, &xhat, &rstd)
        let dx = Kernels.layerNormBackward(c, xhat: xhat, rstd: rstd, weight: w, rows: rows, d: d)
        let numeric = x.indices.map { i in FD.derivative(x[i], h: 1e-2, set: { x[i] = $0 }, loss) }
        #expect(FD.compare(dx.map(Double.init), numeric) <= 1)
    }

    @Test func softmaxBackwardWithScale() {
        var rng = SeededRNG(seed: 2)
        let rows = 2
        let cols = 5
        var z = FD.random(rows * cols, &rng, scale: 2)
        let c = FD.random(rows * cols, &rng)
        let scale: Float = 0.5
        func probs() -> [Float] {
            var p = z.map { $0 * scale }
            p.withUnsafeMutableBufferPointer { for r in 0..<rows { Kernels.softmaxForward($0.baseAddress! + r * cols, n: cols) } }
            return p
        }
        func loss() -> Double { zip(probs(), c).reduce(0) { $0 + Double($1.0) * Double($1.1) } }
        var P = probs()
        P.withUnsafeMutableBufferPointer { pp in
            c.withUnsafeBufferPointer { Kernels.softmaxBackward(pp.baseAddress!, $0.baseAddress!, rows: rows, cols: cols, scale: scale) }
        }
        let numeric = z.indices.map { i in FD.derivative(z[i], h: 1e-2, set: { z[i] = $0 }, loss) }
        #expect(FD.compare(P.map(Double.init), numeric) <= 1)
    }

    @Test func crossEntropyBackward() {
        var rng = SeededRNG(seed: 3)
        var logits = FD.random(3 * 4, &rng, scale: 3)
        let labels = [0, 3, 2]
        let (_, d) = AdapterTrainer.crossEntropy(logits, labels: labels, classes: 4, scale: 1)
        let numeric = logits.indices.map { i in
            FD.derivative(logits[i], h: 1e-2, set: { logits[i] = $0 }) { AdapterTrainer.crossEntropy(logits, labels: labels, classes: 4, scale: 1).0 }
        }
        #expect(FD.compare(d.map(Double.init), numeric) <= 1)
    }

    @Test func geluBackward() {
        // The backward's GELU' against differences of the forward's GELU (same erf).
        for x in stride(from: Float(-4), through: 4, by: 0.37) {
            var v = x
            let numeric = FD.derivative(x, h: 1e-2, set: { v = $0 }) {
                var y = v
                Kernels.geluForward(&y, count: 1)
                return Double(y)
            }
            var g: [Float] = [1]
            Kernels.geluBackward(&g, x: [x])
            #expect(abs(numeric - Double(g[0])) < 1e-3, "x = \(x)")
        }
    }

    /// A TrainLinear with an adapter of the given kind, loss = Σ c ⊙ y.
    func linearCheck(_ variant: AdaptedLinear.Variant, dora: Bool) {
        var rng = SeededRNG(seed: 4)
        let n = 3
        let inF = 6
        let outF = 5
        let r = 2
        let lin = AdaptedLinear(name: "l", weight: FD.random(outF * inF, &rng), bias: FD.random(outF, &rng), out: outF, in: inF)
        let tl = TrainLinear(lin, name: "l")
        tl.pA = Param(name: "A", value: FD.random(r * inF, &rng, scale: 0.5))
        tl.pB = Param(name: "B", value: FD.random(outF * r, &rng, scale: 0.5))
        if dora { tl.pM = Param(name: "m", value: FD.random(outF, &rng).map { $0 + 2 }) }
        let variant: AdaptedLinear.Variant = dora ? .dora : variant
        lin.install(a: tl.pA!.value, b: tl.pB!.value, rank: r, scaling: 1.5, magnitude: tl.pM?.value, variant: variant)
        var x = FD.random(n * inF, &rng)
        let c = FD.random(n * outF, &rng)
        var noRng = SeededRNG(seed: 0)
        _ = tl.forward(x, rows: n, train: false, rng: &noRng)
        let dx = tl.backward(c, needDx: true)!
        // DoRA's row norm is detached in the gradient (PEFT): hold the scale's norm fixed while differencing A and B.
        let frozenNorm: [Float]? = dora ? zip(tl.pM!.value, lin.doraScale!).map { $0 / $1 } : nil
        func loss(freezeNorm: Bool = false) -> Double {
            lin.install(a: tl.pA!.value, b: tl.pB!.value, rank: r, scaling: 1.5, magnitude: tl.pM?.value, variant: variant)
            if freezeNorm, let fn = frozenNorm { lin.doraScale = zip(tl.pM!.value, fn).map { $0 / $1 } }
            var g = SeededRNG(seed: 0)
            let y = tl.forward(x, rows: n, train: false, rng: &g)
            return zip(y, c).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
        let nx = x.indices.map { i in FD.derivative(x[i], h: 1e-2, set: { x[i] = $0 }) { loss() } }
        #expect(FD.compare(dx.map(Double.init), nx) <= 1, "\(variant) dora \(dora): dx")
        for p in [tl.pA!, tl.pB!] + (tl.pM.map { [$0] } ?? []) {
            let numeric = p.value.indices.map { i in FD.derivative(p.value[i], h: 1e-2, set: { p.value[i] = $0 }) { loss(freezeNorm: p.name != "m") } }
            #expect(FD.compare(p.grad.map(Double.init), numeric) <= 1, "\(variant) dora \(dora): d\(p.name)")
        }
    }

    @Test func linearLoRABackward() { linearCheck(.lora, dora: false) }
    @Test func linearDoRABackward() { linearCheck(.lora, dora: true) }
    @Test func linearHiRABackward() { linearCheck(.hira, dora: false) }
}

@Suite struct FiniteDifferenceModelTests {
    /// Whole-model check: each adapter and head parameter (a spread sample of coordinates) by central
    /// differences of the loss; covers attention, softmax, LayerNorm/RMSNorm, GELU/SwiGLU, RoPE, pooling,
    /// the head and cross-entropy in one chain.
    /// The fixture weights are tiny (std 0.02), so adapter gradients sit near Float32 noise: parameters are
    /// redrawn at a scale where the loss depends on them visibly (the gradient code does not care).
    func check(_ t: AdapterTrainer, _ batch: [Example], skipFactors: Bool = false, perParam: Int = 4) -> (Double, Int) {
        let params = t.params
        var rng = SeededRNG(seed: 9)
        for p in params {
            p.value = p.name.hasSuffix("magnitude_vector") ? p.value.map { $0 * (1.5 + rng.uniformFloat()) } : FD.random(p.value.count, &rng, scale: 0.6)
        }
        func sync() {
            for m in t.modules { t.linears[m]!.sync() }
            t.task.syncHead()
        }
        sync()
        for p in params { p.zeroGrad() }
        _ = t.lossAndGradients(batch, train: false)
        let grads = params.map(\.grad)
        let globalScale = grads.flatMap { $0 }.map { abs(Double($0)) }.max() ?? 1
        var worst = 0.0
        var checked = 0
        for (pi, p) in params.enumerated() {
            if skipFactors && (p.name.hasSuffix("lora_A") || p.name.hasSuffix("lora_B")) { continue }
            let idx = FD.sample(p.value.count, perParam)
            let numeric = idx.map { i in
                FD.derivative(p.value[i], h: 1e-2, set: { p.value[i] = $0 }) {
                    sync()
                    return t.lossAndGradients(batch, train: false)
                }
            }
            sync()
            var w = 0.0
            for (k, i) in idx.enumerated() { w = max(w, abs(Double(grads[pi][i]) - numeric[k]) / (2e-3 * globalScale + 2e-2 * abs(Double(grads[pi][i])))) }
            worst = max(worst, w)
            checked += idx.count
        }
        return (worst, checked)
    }

    func bert(_ tag: String, variant: AdaptedLinear.Variant = .lora) throws -> (AdapterTrainer, [Example]) {
        try TFx.bertTrainer(tag, variant: variant)
    }

    @Test(arguments: ["bert-lora", "bert-rslora", "bert-hira"])
    func bertAdapterGradients(tag: String) throws {
        let (t, batch) = try bert(tag == "bert-hira" ? "bert-lora" : tag, variant: tag == "bert-hira" ? .hira : .lora)
        let (worst, n) = check(t, batch)
        #expect(n >= 30)
        #expect(worst <= 1, "\(tag): worst violation ratio \(worst)")
    }

    @Test func bertDoRAMagnitudeAndHeadGradients() throws {
        // DoRA's A and B gradients treat the row norm as a constant (PEFT): finite differences do not, so
        // only the magnitude and the head are differenced here (A and B are checked against PEFT's).
        let (t, batch) = try bert("bert-dora")
        let (worst, n) = check(t, batch, skipFactors: true)
        #expect(n >= 8)
        #expect(worst <= 1, "worst violation ratio \(worst)")
    }

    /// CoTo's partial activation: with a random subset of groups active (lowest active layer above 0), the
    /// early-stopped backward matches central differences; inactive adapters' gradients are 0 = d loss.
    @Test(arguments: ["bert-lora-module", "bert-hira-layer", "llama-lora-layer"])
    func gradientsWithASubsetActive(tag: String) throws {
        let (t, batch) = try PartialActivationTests.trainer(tag)
        let active = PartialActivationTests.subsets(t, count: 1, seed: 11)[0]
        #expect(active.contains(false) && active.contains(true))
        for m in t.modules { t.model.linears[m]!.active = active[t.groupOf[m]!] }
        let (worst, n) = check(t, batch)
        #expect(n >= 40)
        #expect(worst <= 1, "\(tag): worst violation ratio \(worst)")
    }

    @Test func llamaAdapterGradients() throws {
        let (t, batch) = try TFx.llamaTrainer()
        let (worst, n) = check(t, batch)
        #expect(n >= 40)
        #expect(worst <= 1, "worst violation ratio \(worst)")
    }
}

@Suite struct WorkerSplitTests {
    /// Splitting each batch over two workers (own activations and gradient buffers) gives the gradients
    /// and loss of one pass over the whole batch.
    @Test(arguments: ["bert-lora", "bert-dora"])
    func twoWorkersEqualOne(tag: String) throws {
        let adapter = try Adapter.load(TestPaths.fixture("peft/" + tag))
        func make(_ workers: Int) throws -> AdapterTrainer {
            let model = try ModelRegistry.load(TestPaths.fixture("tiny-bert")) as! BertModel
            var c = TrainConfig()
            c.rank = adapter.config.r
            c.alpha = adapter.config.loraAlpha
            c.dora = adapter.config.useDora
            c.targets = ["query", "value"]
            c.workers = workers
            let t = try AdapterTrainer(model: model, labels: ["0", "1", "2"], config: c)
            try t.load(adapter)
            return t
        }
        let batch = [
            Example(ids: [2, 5, 9, 13, 7, 3], typeIds: [0, 0, 0, 0, 0, 0], label: 0), Example(ids: [2, 8, 4, 3], typeIds: [0, 0, 0, 0], label: 2),
            Example(ids: [2, 11, 3], typeIds: [0, 0, 0], label: 1), Example(ids: [2, 6, 6, 7, 8, 9, 10, 3], typeIds: [0, 0, 0, 0, 0, 0, 0, 0], label: 1),
            Example(ids: [2, 20, 21, 3], typeIds: [0, 0, 0, 0], label: 0),
        ]
        let one = try make(1)
        let two = try make(2)
        let l1 = one.lossAndGradients(batch, train: false)
        let l2 = two.lossAndGradients(batch, train: false)
        #expect(abs(l1 - l2) < 1e-6)
        #expect(one.params.count == two.params.count && one.params.count >= 10)
        for (p, q) in zip(one.params, two.params) {
            #expect(p.name == q.name)
            #expect(relErr(q.grad, p.grad) < 1e-5, "\(p.name): \(relErr(q.grad, p.grad))")
        }
        // A second call starts from cleared worker buffers (no gradient counted twice).
        for p in one.params { p.zeroGrad() }
        for p in two.params { p.zeroGrad() }
        _ = one.lossAndGradients(batch, train: false)
        _ = two.lossAndGradients(batch, train: false)
        for (p, q) in zip(one.params, two.params) { #expect(relErr(q.grad, p.grad) < 1e-5, "\(p.name) (second call)") }
    }

    /// The batch is cut where the two parts' tokens balance best (the first such cut), never leaving a part empty.
    @Test func workersCutWhereTheTokensBalance() {
        #expect(Workers<DifferentiableBert>.cut(lengths: [5, 5, 5, 5]) == 2)
        #expect(Workers<DifferentiableBert>.cut(lengths: [30, 5, 5, 5, 5, 5, 5]) == 1)
        #expect(Workers<DifferentiableBert>.cut(lengths: [5, 5, 5, 5, 5, 5, 30]) == 6)
        #expect(Workers<DifferentiableBert>.cut(lengths: [4, 4, 4]) == 1)
        #expect(Workers<DifferentiableBert>.cut(lengths: [7, 9]) == 1)
        #expect(Workers<DifferentiableBert>.cut(lengths: [10, 2, 2, 2, 2, 2]) == 1)
        #expect(Workers<DifferentiableBert>.cut(lengths: [3, 3, 10, 1, 1]) == 2)
    }

    /// The causal LM's halves score different numbers of positions (4 and 2 here, the first sequence's prompt
    /// unscored): both divide by the whole batch's count, so two workers give one pass's mean loss and gradients.
    @Test func twoWorkersEqualOneForTheCausalLM() throws {
        let adapter = try Adapter.load(TestPaths.fixture("peft/llama-lora"))
        func make(_ workers: Int) throws -> AdapterTrainer {
            let model = try ModelRegistry.load(TestPaths.fixture("tiny-llama")) as! LlamaModel
            var c = TrainConfig()
            c.rank = adapter.config.r
            c.alpha = adapter.config.loraAlpha
            c.targets = ["q_proj", "v_proj", "down_proj"]
            c.workers = workers
            let t = try AdapterTrainer(causalLM: model, config: c)
            try t.load(adapter)
            return t
        }
        let batch = [
            Example(ids: [1, 5, 9, 13, 7, 3], targets: [-100, -100, 9, 13, 7, 3]), Example(ids: [1, 8, 4], targets: [-100, 8, 4]),
            Example(ids: [1, 20, 21, 22, 3], targets: [-100, -100, -100, -100, 3]),
        ]
        let one = try make(1)
        let two = try make(2)
        let l1 = one.lossAndGradients(batch, train: false)
        let l2 = two.lossAndGradients(batch, train: false)
        #expect(l1 > 0 && abs(l1 - l2) < 1e-6, "\(l1) vs \(l2)")
        #expect(one.params.count == two.params.count && one.params.count >= 6)
        for (p, q) in zip(one.params, two.params) {
            #expect(p.grad.contains { $0 != 0 } || p.name.hasSuffix("lora_B"), "\(p.name): no gradient")
            #expect(relErr(q.grad, p.grad) < 1e-5, "\(p.name): \(relErr(q.grad, p.grad))")
        }
    }
}

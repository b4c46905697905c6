import Numerics
#if canImport(Glibc)
import Glibc
#endif

/// One trainable tensor with its gradient and AdamW state (per-parameter step count, as torch).
public final class Param {
    public let name: String
    public var value: [Float]
    public var grad: [Float]
    var m: [Float]
    var v: [Float]
    public internal(set) var step = 0

    public init(name: String, value: [Float]) {
        self.name = name
        self.value = value
        grad = [Float](repeating: 0, count: value.count)
        m = grad
        v = grad
    }

    public func zeroGrad() { for i in grad.indices { grad[i] = 0 } }

    /// Optimizer state for checkpoints: (m, v, step).
    public var state: ([Float], [Float], Int) { (m, v, step) }
    public func restore(m: [Float], v: [Float], step: Int) {
        self.m = m
        self.v = v
        self.step = step
    }
}

/// torch.optim.AdamW (decoupled weight decay, bias-corrected moments, eps outside the square root).
public struct AdamW: Sendable {
    public var beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 0.01
    public init(weightDecay: Float = 0.01) { self.weightDecay = weightDecay }

    /// Updates a parameter that took part in this step (a skipped one keeps value, moments and step).
    public func update(_ p: Param, lr: Float) {
        p.step += 1
        let t = Float(p.step)
        let bc1 = 1 - powf(beta1, t)
        let bc2 = 1 - powf(beta2, t)
        let stepSize = lr / bc1
        let bc2Sqrt = bc2.squareRoot()
        for i in p.value.indices {
            p.value[i] *= 1 - lr * weightDecay
            let g = p.grad[i]
            p.m[i] = beta1 * p.m[i] + (1 - beta1) * g
            p.v[i] = beta2 * p.v[i] + (1 - beta2) * g * g
            let denom = p.v[i].squareRoot() / bc2Sqrt + eps
            p.value[i] -= stepSize * p.m[i] / denom
        }
    }
}

/// Learning-rate schedules as transformers' get_*_schedule_with_warmup (multiplier of the base lr).
public enum Schedule: String, Sendable, CaseIterable {
    case linear, cosine, constant

    public func factor(step: Int, total: Int, warmup: Int) -> Float {
        if step < warmup { return Float(step) / Float(max(1, warmup)) }
        switch self {
        case .constant: return 1
        case .linear: return max(0, Float(total - step) / Float(max(1, total - warmup)))
        case .cosine:
            let progress = Double(step - warmup) / Double(max(1, total - warmup))
            return Float(max(0, 0.5 * (1 + cos(Double.pi * progress))))
        }
    }
}

/// torch.nn.utils.clip_grad_norm_: scales all gradients by max_norm / (total_norm + 1e-6) when above.
@discardableResult
public func clipGradNorm(_ params: [Param], maxNorm: Float) -> Float {
    var ss = 0.0
    for p in params { for g in p.grad { ss += Double(g) * Double(g) } }
    let total = Float(ss.squareRoot())
    let coef = maxNorm / (total + 1e-6)
    if coef < 1 { for p in params { for i in p.grad.indices { p.grad[i] *= coef } } }
    return total
}

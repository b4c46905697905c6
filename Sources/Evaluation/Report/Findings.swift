import Checkpoint
import Foundation

/// The paper's findings against our measurements: for every pair of a plain series and its CoTo counterpart
/// (`lora` and `coto`, `dora` and `coto-dora`, ...) each figure the paper compares, the mean ± std over
/// seeds on both sides, the difference and a verdict by a stated rule.
extension Report {
    /// What a finding's measurement says about the paper's claim.
    public enum Verdict: String, Sendable {
        case reproduced = "reproduced"
        case notReproduced = "not reproduced"
        case withinNoise = "within noise"
        case undecided = "undecided (fewer than 2 values a side)"
    }

    /// The rule: d = mean(CoTo) − mean(plain), its standard error se = sqrt(s_c²/n_c + s_p²/n_p) (sample standard
    /// deviations over seeds, or over pairs of seeds for interpolation), but at least `resolution` (an accuracy
    /// on n examples: 1/n, since seeds that agree to the example would otherwise make a one-example difference
    /// decisive). |d| ≤ 2·se: within noise; otherwise reproduced when d points the way the paper claims, not
    /// reproduced when it points the other way. Fewer than two values on a side: undecided.
    public static func verdict(
        coto: [Double], plain: [Double], cotoBetterWhenHigher: Bool, resolution: Double = 0
    ) -> (difference: Double, standardError: Double, verdict: Verdict) {
        let (mc, sc) = meanStd(coto)
        let (mp, sp) = meanStd(plain)
        let d = mc - mp
        guard coto.count >= 2, plain.count >= 2 else { return (d, .nan, .undecided) }
        let se = max(resolution, (sc * sc / Double(coto.count) + sp * sp / Double(plain.count)).squareRoot())
        if abs(d) <= 2 * se { return (d, se, .withinNoise) }
        return (d, se, (d > 0) == cotoBetterWhenHigher ? .reproduced : .notReproduced)
    }

    /// The plain series a CoTo series is compared with: `coto` → `lora`, `coto-dora` → `dora`; nil for a
    /// plain series.
    static func plainCounterpart(_ name: String) -> String? {
        if name == "coto" { return "lora" }
        return name.hasPrefix("coto-") ? String(name.dropFirst(5)) : nil
    }

    /// The findings table (markdown, results.json part); empty when no CoTo series has its plain counterpart.
    static func findings(_ sweeps: [Joined], _ runs: [TrainingRun]) -> (String, JSON) {
        let (series, maxSparsity, merges) = figures(sweeps, runs)
        var rows: [[String]] = []
        var js: [JSON] = []
        var verdicts: [Verdict] = []
        func add(
            _ finding: String, claim: String, task: String, plainName: String, cotoName: String, plain: [Double], coto: [Double], higher: Bool, digits: Int = 3,
            resolution: Double = 0
        ) {
            guard !plain.isEmpty, !coto.isEmpty else { return }
            let (d, se, v) = verdict(coto: coto, plain: plain, cotoBetterWhenHigher: higher, resolution: resolution)
            verdicts.append(v)
            rows.append([
                finding, claim, task, "\(plainName) \(pm(plain, digits))", "\(cotoName) \(pm(coto, digits))",
                String(format: "%+.\(digits)f", d), se.isFinite ? String(format: "%.\(digits)f", se) : "–", "**\(v.rawValue)**",
            ])
            js.append(
                .object([
                    ("finding", .string(finding)), ("claim", .string(claim)), ("task", .string(task)), ("plain", .string(plainName)),
                    ("coto", .string(cotoName)),
                    ("plain_values", stats(plain)), ("coto_values", stats(coto)), ("difference", .double(d)),
                    ("standard_error", se.isFinite ? .double(se) : .null), ("verdict", .string(v.rawValue)),
                ]))
        }
        for c in series {
            guard let plainName = plainCounterpart(c.name), let p = series.first(where: { $0.task == c.task && $0.name == plainName }) else { continue }
            let up = c.metric.higherIsBetter
            let better = up ? "higher" : "lower"
            let task = Sweeps.label(c.task, metricName: c.metric.name)
            // Accuracies: one example of the smaller test set is the finest difference they can show.
            let res = [c.examples, p.examples].compactMap { $0 }.min().map { 1 / Double(max(1, $0)) } ?? 0
            add(
                "single-task \(c.metric.name)", claim: "CoTo \(better)", task: task, plainName: plainName, cotoName: c.name, plain: p.test, coto: c.test,
                higher: up, resolution: res)
            add(
                "interpolation λ=0.5", claim: "CoTo \(better)", task: task, plainName: plainName, cotoName: c.name, plain: p.mid, coto: c.mid, higher: up,
                resolution: res)
            add(
                "interpolation barrier", claim: "CoTo lower", task: task, plainName: plainName, cotoName: c.name, plain: p.barrier, coto: c.barrier,
                higher: false, resolution: res)
            if let s = maxSparsity {
                add(
                    "magnitude pruning, sparsity \(s)", claim: "CoTo \(better)", task: task, plainName: plainName, cotoName: c.name, plain: p.sparse,
                    coto: c.sparse, higher: up, resolution: res)
            }
            add(
                "every other layer dropped", claim: "CoTo \(better)", task: task, plainName: plainName, cotoName: c.name, plain: p.half, coto: c.half,
                higher: up, resolution: res)
            add(
                "Shapley spread (CV)", claim: "CoTo lower (more even)", task: task, plainName: plainName, cotoName: c.name, plain: p.cv, coto: c.cv,
                higher: false, digits: 2)
            add(
                "training steps' time (s)", claim: "CoTo lower", task: task, plainName: plainName, cotoName: c.name, plain: p.time, coto: c.time, higher: false,
                digits: 1)
        }
        // `individual` is each adapter on its own task: the single-task rows above, not a merge.
        for c in merges where c.method != "individual" {
            guard let plainName = plainCounterpart(c.name), let p = merges.first(where: { $0.method == c.method && $0.name == plainName }) else { continue }
            add(
                "merge: \(c.method)", claim: "CoTo higher", task: "mean over tasks", plainName: plainName, cotoName: c.name, plain: p.perSet, coto: c.perSet,
                higher: true)
        }
        // A searched merge (`ties-searched`, from `coto-eval search`) against its method at default weights: does
        // CoTo's advantage hold once the weights are tuned? Not a claim of the paper: outside the tallies.
        var searchedRows = 0
        for c in merges where c.method.hasSuffix("-searched") {
            let base = String(c.method.dropLast("-searched".count))
            guard let plainName = plainCounterpart(c.name), let ps = merges.first(where: { $0.method == c.method && $0.name == plainName }),
                let cd = merges.first(where: { $0.method == base && $0.name == c.name }),
                let pd = merges.first(where: { $0.method == base && $0.name == plainName })
            else { continue }
            let (dD, seD, _) = verdict(coto: cd.perSet, plain: pd.perSet, cotoBetterWhenHigher: true)
            let (dS, seS, _) = verdict(coto: c.perSet, plain: ps.perSet, cotoBetterWhenHigher: true)
            let change = dS - dD
            let seC = (seD * seD + seS * seS).squareRoot()
            let outcome = searchedOutcome(default: (dD, seD), searched: (dS, seS))
            searchedRows += 1
            rows.append([
                "merge advantage, \(base) → searched", "(not in the paper)", "mean over tasks",
                "default weights d \(String(format: "%+.3f", dD)) ± \(String(format: "%.3f", seD))",
                "searched d \(String(format: "%+.3f", dS)) ± \(String(format: "%.3f", seS))", String(format: "%+.3f", change),
                seC.isFinite ? String(format: "%.3f", seC) : "–",
                "**\(outcome)**",
            ])
            js.append(
                .object([
                    ("finding", .string("merge advantage once weights are searched")), ("method", .string(base)), ("plain", .string(plainName)),
                    ("coto", .string(c.name)), ("default_difference", .double(dD)), ("default_standard_error", seD.isFinite ? .double(seD) : .null),
                    ("searched_difference", .double(dS)), ("searched_standard_error", seS.isFinite ? .double(seS) : .null),
                    ("change", .double(change)), ("verdict", .string(outcome)),
                ]))
        }
        guard !rows.isEmpty else { return ("", .null) }
        var md = "## What reproduces\n\n"
        md += "The paper's findings against this run's measurements: mean ± std over seeds (pairs of seeds for interpolation), "
        md +=
            "d = CoTo − plain, se = sqrt(s²_CoTo/n_CoTo + s²_plain/n_plain), for accuracies at least one test example (1/n). Rule: |d| ≤ 2·se is **within noise**; otherwise "
        md += "**reproduced** when d points the way the paper claims and **not reproduced** when it points the other way; "
        md += "fewer than 2 values on a side is **undecided**. Training time is the optimizer steps' wall time on this machine (dev evaluations excluded).\n\n"
        md += mdTable(["finding", "paper", "task", "plain", "CoTo", "d", "se", "verdict"], rows) + "\n"
        let counts = [Verdict.reproduced, .notReproduced, .withinNoise, .undecided].compactMap { v -> String? in
            let n = verdicts.filter { $0 == v }.count
            return n == 0 ? nil : "\(n) \(v.rawValue)"
        }
        md += "Of \(rows.count - searchedRows) comparisons: " + counts.joined(separator: ", ") + ".\n"
        if searchedRows > 0 {
            md += "The *merge advantage → searched* rows set d = CoTo − plain at the method's default weights against d with weights "
            md += "searched on dev data (`coto-eval search`, scored on test); their change Δ (column d) has se_Δ = sqrt(se_default² + se_searched²). "
            md += "Δ > 2·se_Δ: **grows**; Δ < −2·se_Δ: **shrinks** (searched d still beyond noise), **vanishes** (within noise) or **reverses** "
            md += "(beyond noise the other way); otherwise **holds** when the searched d is beyond 2·se, **within noise once searched** when only "
            md += "the default d was, **absent either way** when neither is.\n"
        }
        if !merges.contains(where: { $0.method == "lego" }) {
            md += "Not measured: LoRA-LEGO merging (not in this run's merge sweep: `coto-eval merge --methods ...,lego`).\n"
        }
        md += "\n"
        return (md, .array(js))
    }

    /// What searching the weights does to CoTo's merge advantage d (CoTo − plain, with its standard error): by
    /// the change Δ = d_searched − d_default against 2·se_Δ (se_Δ = sqrt(se_d² + se_s²)), then by where d_searched is.
    static func searchedOutcome(default a: (Double, Double), searched b: (Double, Double)) -> String {
        guard a.1.isFinite, b.1.isFinite else { return "undecided (fewer than 2 values a side)" }
        let change = b.0 - a.0
        let seChange = (a.1 * a.1 + b.1 * b.1).squareRoot()
        let searchedBeyond = abs(b.0) > 2 * b.1
        if change > 2 * seChange { return "grows" }
        if change < -2 * seChange { return !searchedBeyond ? "vanishes" : b.0 > 0 ? "shrinks" : "reverses" }
        if searchedBeyond { return b.0 > 0 ? "holds" : "holds, for the plain series" }
        return abs(a.0) > 2 * a.1 ? "within noise once searched" : "absent either way"
    }
}

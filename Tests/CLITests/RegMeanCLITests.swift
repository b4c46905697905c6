import Foundation
import Testing
import TestSupport
import Checkpoint
import Numerics

/// `coto-merge --method regmean` from the command line: the merge PEFT's hooks give (Fixtures/regmean), and the
/// option errors.
@Suite struct RegMeanCLITests {
    @Test func regmeanFromTheCommandLineIsPEFTsClosedForm() throws {
        let t = TempDir()
        let args = [
            CLI.fixture("peft/merge-a"), CLI.fixture("peft/merge-b"), "--method", "RegMean", "--model", CLI.fixture("tiny-bert"), "--data",
            CLI.fixture("regmean/a.jsonl") + "," + CLI.fixture("regmean/b.jsonl"), "--examples", "10", "--max-length", "24", "--heads", "drop",
            "--regmean-alpha", "0.9",
        ]
        let r = try CLI.run("coto-merge", args + ["-o", t.path + "/m"])
        #expect(r.status == 0, "\(r.err)")
        let merged = try Adapter.load(t.path + "/m")
        let ref = try SafeTensorsFile(path: CLI.fixture("regmean/expected.safetensors"))
        #expect(merged.modules.count == 6 && merged.config.r == 8)
        for m in merged.modules {
            #expect(relErr(m.delta(), try ref.tensor("merged.0.9.\(m.name)")) < 1e-4, "\(m.name)")
        }
        let low = try CLI.run("coto-merge", args + ["--rank", "2", "-o", t.path + "/low.safetensors"])
        #expect(low.status == 0, "\(low.err)")
        let lowAdapter = try Adapter.load(t.path + "/low.safetensors")
        #expect(lowAdapter.modules.allSatisfy { $0.rank == 2 })
        // Usage: regmean without its data, the data with another method, an alpha outside [0, 1].
        #expect(try CLI.run("coto-merge", Array(args.prefix(5)) + ["-o", t.path + "/x"]).status == 64)
        #expect(try CLI.run("coto-merge", args.map { $0 == "RegMean" ? "ties" : $0 } + ["-o", t.path + "/x"]).status == 64)
        #expect(try CLI.run("coto-merge", args + ["--regmean-alpha", "1.5", "-o", t.path + "/x"]).status == 64)
        // a = 1 on this model (LayerNorms at their init: Σ G singular): one line naming the option to lower.
        let singular = try CLI.run("coto-merge", args.dropLast(2) + ["-o", t.path + "/x"])
        #expect(singular.status == 1 && singular.err.contains("--regmean-alpha below 1"), "\(singular.err)")
        // One data file for two adapters: one line, exit 1.
        var one = args
        one[7] = CLI.fixture("regmean/a.jsonl")
        let bad = try CLI.run("coto-merge", one + ["-o", t.path + "/x"])
        #expect(bad.status == 1 && bad.err.contains("1 files for 2 adapters"), "\(bad.err)")
    }
}

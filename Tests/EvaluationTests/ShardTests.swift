import Testing
import Foundation
import CZlib
@testable import Evaluation
import Model
import Operators
import Checkpoint
import Numerics
import TestSupport

@Suite struct SweepRecordTests {
    @Test func olderFilesDecodeAndRoundTrip() throws {
        let old = """
            {"sweep": "merge", "name": "lora", "adapters": ["a", "b"], "data": ["x-test.jsonl", "y-test.jsonl"], "task": "x+y",
             "shard": [1, 1], "settings": {"methods": ["ties"], "weights": "default", "density": 0.5, "seed": 0},
             "points": [{"method": "ties", "task": "x", "adapter": "a", "accuracy": null, "macro_f1": 0.5, "loss": 1.25, "examples": 4}]}
            """
        let r = try JSONDecoder().decode(SweepResult.self, from: Data(old.utf8))
        #expect(r.settings.weights == nil && r.settings.methods == ["ties"] && r.shard == [1, 1])
        #expect(r.points?.first?.accuracy == nil && r.points?.first?.loss == 1.25 && r.points?.first?.method == "ties")
        var p = SweepPoint(score: Score(accuracy: .nan, macroF1: 0.25, loss: 2, examples: 3))
        p.lambda = 0.5
        var again = r
        again.points = [p]
        let back = try JSONDecoder().decode(SweepResult.self, from: Data(try again.encoded().utf8))
        #expect(back.points?.first?.accuracy == nil && back.points?.first?.lambda == 0.5 && back.settings == r.settings)
        #expect(Sweeps.fileName(back) == Sweeps.fileName(r))  // the results are not part of the identity
    }
}

/// `--shard auto`: the shard from Slurm job arrays, Kubernetes Indexed Jobs and RANK/WORLD_SIZE.
@Suite struct ShardEnvironmentTests {
    func shard(_ env: [String: String], _ n: Int? = nil) throws -> Shard { try Shard.fromEnvironment(env, numShards: n) }

    @Test func slurmArrays() throws {
        // --array=0-3: ids 0…3 are shards 1…4 of 4.
        #expect(
            try shard(["SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "3"])
                == Shard(index: 1, count: 4))
        #expect(try shard(["SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"]) == Shard(index: 4, count: 4))
        // --array=1-4 and a MIN/MAX-only environment; --array=0-10:5 (ids 0, 5, 10).
        #expect(try shard(["SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "4"]) == Shard(index: 2, count: 4))
        #expect(
            try shard(["SLURM_ARRAY_TASK_ID": "10", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "10", "SLURM_ARRAY_TASK_STEP": "5"])
                == Shard(index: 3, count: 3))
        // Only the id: --num-shards gives the count; it must agree with Slurm's when both are there.
        #expect(try shard(["SLURM_ARRAY_TASK_ID": "1"], 2) == Shard(index: 2, count: 2))
        #expect(throws: EvalError.self) { try shard(["SLURM_ARRAY_TASK_ID": "1"]) }
        // With --num-shards the task id is the shard index from 0, whatever part of the array was submitted
        // (a resubmitted `--array=2` of a 4-way sweep is shard 3 of 4).
        #expect(
            try shard(["SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "1", "SLURM_ARRAY_TASK_MIN": "2", "SLURM_ARRAY_TASK_MAX": "2"], 4)
                == Shard(index: 3, count: 4))
        #expect(try shard(["SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "1", "SLURM_ARRAY_TASK_MIN": "2"]) == Shard(index: 1, count: 1))
        #expect(throws: EvalError.self) { try shard(["SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"], 4) }
        #expect(throws: EvalError.self) { try shard(["SLURM_ARRAY_TASK_ID": "-1"], 4) }
        #expect(throws: EvalError.self) { try shard(["SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "4"]) }
        #expect(throws: EvalError.self) {
            try shard(["SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "2", "SLURM_ARRAY_TASK_MAX": "4"])
        }
        #expect(throws: EvalError.self) { try shard(["SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "4"]) }
        // Slurm wins over the others.
        #expect(try shard(["SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "2", "RANK": "1", "WORLD_SIZE": "2"]) == Shard(index: 1, count: 2))
    }

    @Test func kubernetesRankAndNothing() throws {
        #expect(try shard(["JOB_COMPLETION_INDEX": "0"], 3) == Shard(index: 1, count: 3))
        #expect(try shard(["JOB_COMPLETION_INDEX": "2"], 3) == Shard(index: 3, count: 3))
        #expect(throws: EvalError.self) { try shard(["JOB_COMPLETION_INDEX": "3"], 3) }
        #expect(throws: EvalError.self) { try shard(["JOB_COMPLETION_INDEX": "0"]) }
        #expect(try shard(["RANK": "1", "WORLD_SIZE": "2"]) == Shard(index: 2, count: 2))
        #expect(throws: EvalError.self) { try shard(["RANK": "1"]) }
        do {
            _ = try shard(["PATH": "/usr/bin"])
            Issue.record("accepted")
        } catch let e as EvalError { #expect(e.subject == "--shard auto" && e.message.contains("SLURM_ARRAY_TASK_ID")) }
    }

    /// Every point is in exactly one shard, for any n: the shards of one sweep partition its grid.
    @Test func shardsPartitionThePoints() {
        for n in 1...5 {
            let owners = (0..<17).map { k in (1...n).filter { Shard(index: $0, count: n).owns(k) } }
            #expect(owners.allSatisfy { $0.count == 1 })
        }
    }
}

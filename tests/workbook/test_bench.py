from hneuron_utils.workbook import bench


def test_bench_cett_runs_and_agrees_with_the_per_example_way():
    res = bench.run_cett("tiny-random", 6, 3, dtype="float32")
    assert set(res["seconds"]) == {"ours", "ours without prefix sharing", "bare batched forward",
                                   "per-example (official style)"}
    assert res["max relative difference ours vs per-example (both bf16)"] < 1e-4
    assert res["matmul GFLOP/s in this dtype (measured now)"] > 0


def test_bench_sample_runs():
    res = bench.run_sample("tiny-random", 2, 2, batch_size=4, max_new_tokens=4)
    assert res["questions"] == 2 and res["speed-up"] > 0


def test_bench_monitor_runs_both_ways_on_the_same_answers():
    res = bench.run_monitor("tiny-random", 3, 3, max_new_tokens=4, k=4)
    assert res["plain_tokens"] == res["monitored_tokens"] > 0 and res["plain_seconds"] > 0


def test_bench_steer_runs_both_paths_on_the_same_items():
    res = bench.run_steer("tiny-random", 3, (0.0, 1.0, 2.0), 2, 4, batch_size=8, max_new_tokens=4)
    assert res["conditions"] == 5 and res["items"] == 3  # unmodified + 2 sets x 2 alphas
    assert res["seconds"]["per-condition"] >= 0 and res["seconds"]["batched"] >= 0  # rounded: a tiny run can show 0.0
    assert res["item-conditions/s"]["per-condition"] > 0 and res["item-conditions/s"]["batched"] > 0
    assert res["speed-up"] > 0
    assert res["identical responses, batched vs per-condition (bf16: batch composition can change a few)"].endswith("of 15")

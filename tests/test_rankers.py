"""PairRanker: input format and budgets, loss sign, aggregations, edge cases, a tiny real training run."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from blender_lib import rankers as R
from blender_lib import training as T
from blender_lib.examples import training_inputs
from conftest import BAD_ANSWERS, FACTS, overlap_example

QUESTION = "What is the capital of France?"


def synthetic_examples() -> list[dict]:
    """The good candidate repeats the reference, a partial one half of it, the bad ones none of it."""
    examples = []
    for n, (question, reference) in enumerate(FACTS):
        words = reference.split()
        texts = [reference.capitalize() + ".", " ".join(words[: len(words) // 2]) + "...", *BAD_ANSWERS]
        examples.append(overlap_example(f"ex-{n}", question, reference, texts))
    return examples


# --------------------------------------------------------------------------------------------
# pure functions: loss, aggregation, metric vote, sampling, configuration


def test_pair_logit_is_the_mean_over_metrics_of_the_score_difference():
    s_i, s_j = torch.tensor([[1.0, 3.0]]), torch.tensor([[0.0, 2.0]])
    assert R.pair_logits(s_i, s_j).item() == pytest.approx(1.0)


def test_loss_sign_convention_on_hand_made_scores():
    s_i, s_j = torch.tensor([[2.0]]), torch.tensor([[0.0]])
    agrees = R.pair_loss(s_i, s_j, torch.tensor([[+0.3]]))  # metric prefers i, and so does the model
    disagrees = R.pair_loss(s_i, s_j, torch.tensor([[-5.0]]))  # only the sign of Δ matters, not its size
    assert agrees.item() == pytest.approx(-torch.nn.functional.logsigmoid(torch.tensor(2.0)).item())
    assert disagrees.item() == pytest.approx(-torch.nn.functional.logsigmoid(torch.tensor(-2.0)).item())
    assert agrees < disagrees
    # A gradient step on a metric that prefers i raises s_i and lowers s_j.
    s_i, s_j = torch.zeros(1, 1, requires_grad=True), torch.zeros(1, 1, requires_grad=True)
    R.pair_loss(s_i, s_j, torch.tensor([[1.0]])).backward()
    assert s_i.grad.item() < 0 < s_j.grad.item()


def test_loss_skips_metrics_whose_delta_is_zero():
    s_i, s_j = torch.tensor([[2.0, 7.0]]), torch.tensor([[0.0, -3.0]])
    both = R.pair_loss(s_i, s_j, torch.tensor([[1.0, 0.0]]))
    only_first = R.pair_loss(s_i[:, :1], s_j[:, :1], torch.tensor([[1.0]]))
    assert both.item() == pytest.approx(only_first.item())
    assert R.pair_loss(s_i, s_j, torch.zeros(1, 2)).item() == 0.0  # nothing but ties: no signal


def known_matrix() -> np.ndarray:
    """5 candidates, antisymmetric margins (M[j, i] = -M[i, j]) chosen so the three aggregations disagree:
    0 wins most often (narrowly), 1 wins by the widest margins, and bubble meets 3 (who beats 0) first."""
    beats = {(0, 1): 0.1, (0, 2): 0.1, (3, 0): 0.1, (0, 4): 0.1, (1, 2): 3.0, (1, 3): 3.0, (4, 1): 0.1,
             (2, 3): 0.1, (2, 4): 0.1, (3, 4): 0.1}
    m = np.zeros((5, 5))
    for (winner, loser), margin in beats.items():
        m[winner, loser], m[loser, winner] = margin, -margin
    return m


def test_three_aggregations_on_a_hand_made_matrix_with_a_known_answer():
    m = known_matrix()
    assert np.allclose(R.max_logits(m), 2 * np.array([0.2, 5.8, -2.9, -2.9, -0.2]))
    assert R.max_wins(m).tolist() == [6, 4, 4, 4, 2]  # 3, 2, 2, 2, 1 wins, each counted from both slots
    assert int(np.argmax(R.max_logits(m))) == 1
    assert int(np.argmax(R.max_wins(m))) == 0
    assert R.bubble_winner(m) == 3  # 0 beats 1 and 2, loses to 3, 3 beats 4


def test_max_wins_counts_each_order_and_ignores_the_diagonal():
    m = np.array([[9.0, 1.0], [1.0, 9.0]])  # each wins from slot 1: a position-biased tie
    assert R.max_wins(m).tolist() == [1, 1]
    assert R.max_logits(m).tolist() == [0, 0]


def test_bubble_keeps_the_incumbent_on_a_tie_and_handles_one_candidate():
    assert R.bubble_winner(np.zeros((3, 3))) == 0
    assert R.bubble_winner(np.zeros((1, 1))) == 0


def test_metric_vote_gives_each_metric_one_voice_whatever_its_scale():
    table = np.array([[90.0, 0.1, 0.1], [10.0, 0.2, 0.2], [10.0, 0.2, 0.2]])  # BLEU-like column is huge
    pref = R.metric_preference(table)
    assert pref[1, 0] == 1 and pref[0, 1] == -1  # two of three metrics prefer 1
    assert pref[1, 2] == 0  # identical scores: no preference


def test_pair_sampler_is_seeded_shuffles_order_and_keeps_deltas_aligned():
    with pytest.warns(UserWarning, match="skipped 1 training input.*'dup' has 1 distinct"):
        pools, skipped = training_inputs(synthetic_examples()[:4] + [overlap_example("dup", QUESTION, "x", ["same", "same"])],
                                         ("bleu", "rougeL"), what="PairRanker")
    assert skipped == 1  # two identical candidates: one distinct text, nothing to compare
    sampler = R._PairSampler(pools, pairs_per_input=5, seed=3)
    assert len(sampler) == 4 * 5
    again = R._PairSampler(pools, pairs_per_input=5, seed=3)
    assert [i[:3] for i in sampler.items] == [i[:3] for i in again.items]
    epoch0 = [i[:3] for i in sampler.items]
    sampler.resample(1)
    assert len(sampler) == 20 and [i[:3] for i in sampler.items] != epoch0
    lookup = {(p.source, t): p.scores[k] for p in pools for k, t in enumerate(p.texts)}
    for source, a, b, delta in sampler.items:
        assert np.allclose(delta, lookup[(source, a)] - lookup[(source, b)])
    references = {p.texts[0] for p in pools}
    assert any(a in references for _, a, _, _ in sampler.items)  # the good candidate shows up on both sides
    assert any(b in references for _, _, b, _ in sampler.items)


def test_config_validation_and_unknown_parameters():
    with pytest.raises(ValueError, match="pairs_per_input"):
        R.PairRankerConfig(pairs_per_input=0)
    with pytest.raises(ValueError, match="metrics"):
        R.PairRankerConfig(metrics=())
    with pytest.raises(ValueError, match="unknown PairRanker parameter"):
        R.PairRankerConfig.from_dict({"learning_rate": 1e-5})
    cfg = R.PairRankerConfig.from_dict({"metrics": ["bleu"]})
    assert cfg.metrics == ("bleu",) and cfg.key(ignore=("epochs",)) == replace(cfg, epochs=9).key(ignore=("epochs",))


def test_resuming_with_more_epochs_takes_the_learning_rate_of_the_new_schedule():
    from transformers import get_linear_schedule_with_warmup

    param = torch.nn.Parameter(torch.zeros(1))
    old_opt = torch.optim.AdamW([param], lr=1.0)
    old = get_linear_schedule_with_warmup(old_opt, 0, 3)  # a 1-epoch run of 3 steps decays to lr 0
    for _ in range(3):
        old_opt.step()
        old.step()
    new_opt = torch.optim.AdamW([param], lr=1.0)
    new = get_linear_schedule_with_warmup(new_opt, 0, 6)  # called again with epochs=2
    new_opt.load_state_dict(old_opt.state_dict())
    new.load_state_dict(old.state_dict())
    assert new_opt.param_groups[0]["lr"] == 0.0  # the stale value a plain load leaves behind
    T.sync_lr(new)
    assert new_opt.param_groups[0]["lr"] == pytest.approx(0.5)


# --------------------------------------------------------------------------------------------
# a real (untrained) MiniLM ranker: format, batching, edge cases, persistence


@pytest.fixture(scope="module")
def ranker() -> R.PairRankerModel:
    config = R.PairRankerConfig(source_max_length=16, candidate_max_length=12, bf16=False)  # fp32: stable margins
    return R.PairRankerModel.from_backbone(config)


def test_input_format_special_tokens_and_budgets(ranker):
    f = ranker.formatter
    assert all(len(ranker.tokenizer.tokenize(t)) == 1 for t in R.SPECIAL_TOKENS)
    long_text = "word " * 500
    ids, (p_src, p_ci, p_cj) = f.encode(long_text, long_text, "Short.")
    tokens = ranker.tokenizer.convert_ids_to_tokens(ids)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert (tokens[p_src], tokens[p_ci], tokens[p_cj]) == R.SPECIAL_TOKENS
    assert p_ci - p_src - 1 == 16 and p_cj - p_ci - 1 == 12  # long texts cut to their budgets
    assert len(ids) <= f.max_length


def test_texts_that_look_like_special_tokens_stay_plain_text(ranker):
    ids, positions = ranker.formatter.encode("<source> [SEP]", "<candidate2>", "<candidate1>")
    specials = set(ranker.formatter.special_ids)
    assert [k for k, t in enumerate(ids) if t in specials] == list(positions)


def test_dynamic_padding_and_length_bucketing(ranker, monkeypatch):
    f = ranker.formatter
    short, longer = f.encode("Hi?", "Yes.", "No."), f.encode("Hi there, how are you?", "Fine thanks, and you?", "Ok.")
    batch = f.collate([short, longer])
    assert batch["input_ids"].shape[1] == len(longer[0])  # the longest of this batch, not a fixed maximum
    assert batch["attention_mask"].sum(1).tolist() == [len(short[0]), len(longer[0])]
    widths = []
    collate = f.collate
    monkeypatch.setattr(f, "collate", lambda enc: (widths.append([len(i) for i, _ in enc]), collate(enc))[1])
    candidates = ["a", "a much longer answer with many words in it", "mid length answer", "b"]
    R.comparison_matrix(ranker, QUESTION, candidates, batch_size=3)
    flat = [w for batch_widths in widths for w in batch_widths]
    assert flat == sorted(flat) and len(flat) == 12  # sorted by length; 4 x 3 ordered pairs


def test_comparison_matrix_runs_both_orders_and_matches_pair_scores(ranker):
    candidates = ["Paris.", "Lyon is a city.", "I don't know."]
    m = R.comparison_matrix(ranker, QUESTION, candidates)
    assert m.shape == (3, 3) and np.all(np.diag(m) == 0) and np.all(np.isfinite(m))
    direct = R.score_pairs(ranker, [(QUESTION, candidates[0], candidates[2]), (QUESTION, candidates[2], candidates[0])])
    assert np.allclose([m[0, 2], m[2, 0]], direct, atol=1e-5)
    example = overlap_example("e", QUESTION, "paris", candidates)
    assert np.allclose(R.comparison_matrix(ranker, example), m, atol=1e-5)  # a MixInstruct example works too
    assert np.allclose(R.comparison_matrix(ranker, QUESTION, candidates, batch_size=1), m, atol=1e-5)


def test_one_candidate_needs_no_comparison(ranker, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the model must not run for a single candidate")

    monkeypatch.setattr(R, "score_pairs", fail)
    assert R.rank(ranker, [QUESTION], [["Paris."]]) == [[1]]
    assert R.comparison_matrix(ranker, QUESTION, ["Paris."]).tolist() == [[0.0]]
    assert R.bubble(ranker, QUESTION, ["Paris."]) == (0, 0)
    assert R.best_of_n(ranker, [QUESTION], [["Paris."]], aggregation="bubble") == [0]


@pytest.mark.parametrize("call", ["rank", "compare", "bubble", "rewards"])
def test_an_empty_candidate_is_a_clear_error_naming_its_index(ranker, call):
    with pytest.raises(ValueError, match="candidate 1 of input 0 is empty"):
        if call == "rank":
            R.rank(ranker, [QUESTION], [["Paris.", "  ", "Lyon."]])
        elif call == "compare":
            R.compare(ranker, [QUESTION], ["Paris."], [""])
        elif call == "bubble":
            R.bubble(ranker, QUESTION, ["Paris.", ""])
        else:
            R.reference_rewards(ranker, QUESTION, ["Paris.", ""], "Paris is the capital.")


def test_other_bad_inputs_are_clear_errors(ranker):
    with pytest.raises(ValueError, match="at least one candidate"):
        R.rank(ranker, [QUESTION], [[]])
    with pytest.raises(ValueError, match="instruction 0 is empty"):
        R.rank(ranker, [""], [["a", "b"]])
    with pytest.raises(ValueError, match="2 instructions but 1 candidate lists"):
        R.rank(ranker, [QUESTION, QUESTION], [["a", "b"]])
    with pytest.raises(ValueError, match="best_of_n"):
        R.rank(ranker, [QUESTION], [["a", "b"]], aggregation="bubble")
    with pytest.raises(ValueError, match="unknown aggregation"):
        R.rank(ranker, [QUESTION], [["a", "b"]], aggregation="borda")
    with pytest.raises(ValueError, match="reference 0 is empty"):
        R.reference_rewards(ranker, QUESTION, ["a"], "")


def test_identical_candidates_share_a_rank(ranker):
    candidates = ["Paris.", "It is Lyon, I think.", "Paris.", "No idea.", "Paris."]
    for aggregation in ("max_logits", "max_wins"):
        scores = R.rank(ranker, [QUESTION], [candidates], aggregation=aggregation, return_scores=True)[0]
        ranks = R.rank(ranker, [QUESTION], [candidates], aggregation=aggregation)[0]
        assert scores[0] == scores[2] == scores[4]  # exactly equal, by construction
        assert ranks[0] == ranks[2] == ranks[4]
    assert R.compare(ranker, [QUESTION], ["Paris."], ["Paris."]) == [False]  # a tie: A is not better


def test_rank_compare_best_of_n_and_bubble_agree_with_the_matrix(ranker):
    candidates = ["Paris.", "Lyon is a city in France.", "I don't know.", "The capital is Paris."]
    m = R.comparison_matrix(ranker, QUESTION, candidates)
    ranks = R.rank(ranker, [QUESTION, QUESTION], [candidates, candidates[:2]])
    assert ranks[0] == R.ranks_from_scores(R.max_logits(m)).tolist() and sorted(ranks[1]) == [1, 2]
    assert R.best_of_n(ranker, [QUESTION], [candidates]) == [int(np.argmax(R.max_logits(m)))]
    assert R.best_of_n(ranker, [QUESTION], [candidates], aggregation="max_wins") == [int(np.argmax(R.max_wins(m)))]
    assert R.bubble(ranker, QUESTION, candidates) == (R.bubble_winner(m), 3)
    a_better = R.compare(ranker, [QUESTION] * 2, candidates[:2], candidates[1::-1])
    assert a_better == [m[0, 1] > m[1, 0], m[1, 0] > m[0, 1]]


def test_reference_rewards_are_both_order_logits_against_the_reference(ranker):
    candidates, reference = ["Paris.", "I don't know."], "Paris is the capital of France."
    rewards = R.reference_rewards(ranker, QUESTION, candidates, reference)
    m = R.comparison_matrix(ranker, QUESTION, [*candidates, reference])
    assert rewards.shape == (2,)
    assert np.allclose(rewards, [(m[k, 2] - m[2, k]) / 2 for k in range(2)], atol=1e-5)
    many = R.reference_rewards_many(ranker, [QUESTION, QUESTION], [candidates, candidates[:1]], [reference, reference])
    assert np.allclose(many[0], rewards, atol=1e-5) and many[1].shape == (1,)


def test_save_and_reload_give_identical_scores(ranker, tmp_path):
    candidates = ["Paris.", "Lyon.", "Marseille is big."]
    before = R.comparison_matrix(ranker, QUESTION, candidates)
    folder = ranker.save_pretrained(tmp_path / "ranker")
    assert {p.name for p in tmp_path.iterdir()} == {"ranker"}  # no staging folder left behind
    assert json.loads((folder / R.RANKER_FILE).read_text())["config"]["candidate_max_length"] == 12
    ranker.save_pretrained(folder)  # overwriting an existing ranker swaps it whole
    loaded = R.PairRankerModel.from_pretrained(folder, device="cpu")
    assert loaded.config == ranker.config
    np.testing.assert_allclose(R.comparison_matrix(loaded, QUESTION, candidates), before, rtol=0, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="no saved PairRanker"):
        R.PairRankerModel.from_pretrained(tmp_path / "absent")


def test_matrices_saved_by_one_chapter_are_read_back_by_another_without_comparing(ranker, tmp_path, monkeypatch):
    examples = [{"id": "a", "instruction": QUESTION, "input": "", "candidates": [{"text": t} for t in ("Paris.", "Lyon.")]},
                {"id": "b", "instruction": QUESTION, "input": "", "candidates": [{"text": t} for t in ("Nice.", "I", "x")]}]
    computed = R.example_matrices(ranker, examples)
    R.save_example_matrices(computed, examples, "run/epoch-1", root=tmp_path)
    def compare_again(*args, **kwargs):
        raise LookupError("a saved matrix was computed again")

    monkeypatch.setattr(R, "example_matrices", compare_again)
    read = R.cached_example_matrices(ranker, examples, "run/epoch-1", root=tmp_path)
    assert all(np.array_equal(a, b) for a, b in zip(read, computed))
    with pytest.raises(LookupError, match="computed again"):  # another ranker's id is another file
        R.cached_example_matrices(ranker, examples, "run/epoch-2", root=tmp_path)
    with pytest.raises(ValueError, match="3 candidates but its matrix has shape"):
        R.save_example_matrices([computed[0], computed[0]], examples, "run/epoch-1", root=tmp_path)
    report = R.TrainReport.__new__(R.TrainReport)
    report.best_dir, report.best_epoch = str(tmp_path / "abc-123" / "best"), 2
    assert R.ranker_run_id(report) == "abc-123/epoch-2"


# --------------------------------------------------------------------------------------------
# a tiny real training run (MiniLM), then a resume


TRAIN_CONFIG = R.PairRankerConfig(metrics=("bleu", "rougeL"), source_max_length=16, candidate_max_length=16,
                                  pairs_per_input=3, epochs=1, batch_size=8, lr=1e-4, warmup_ratio=0.0, seed=0)


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    """Train 1 epoch, then call again with epochs=2 (resumes), then once more (nothing left to do)."""
    examples = synthetic_examples()
    train, val = examples[:8], examples[8:]
    out = tmp_path_factory.mktemp("pairranker")
    first = R.train_pairranker(train, val, TRAIN_CONFIG, out, progress=False)
    second = R.train_pairranker(train, val, replace(TRAIN_CONFIG, epochs=2), out, progress=False)
    third = R.train_pairranker(train, val, replace(TRAIN_CONFIG, epochs=2), out, progress=False)
    yield {"out": out, "train": train, "val": val, "reports": (first, second, third)}
    shutil.rmtree(out, ignore_errors=True)  # checkpoints hold optimizer state: hundreds of MB


@pytest.mark.slow
def test_tiny_training_run_learns_something(training):
    report = training["reports"][1]
    assert len(report.train_loss) == 2 and all(np.isfinite(report.train_loss))
    accuracy = [v["pairwise_accuracy"] for v in report.val]
    assert report.train_loss[1] < report.train_loss[0] or accuracy[-1] >= 0.5, (report.train_loss, accuracy)
    assert report.train_pairs == 24 and report.train_pairs_per_second > 0
    assert report.val[0]["compared_pairs"] > 0 and report.val[0]["inference_pairs_per_second"] > 0


@pytest.mark.slow
def test_best_checkpoint_is_saved_and_reloads_to_identical_scores(training):
    report = training["reports"][1]
    best = R.PairRankerModel.from_pretrained(report.best_dir, device="cpu")
    again = R.evaluate_pairranker(best, training["val"])
    recorded = report.val[report.best_epoch - 1]
    for key in ("pairwise_accuracy", "top1_mean_metric_rank", "top1_bleu"):
        assert again[key] == pytest.approx(recorded[key]), key
    same = R.PairRankerModel.from_pretrained(training["out"] / f"epoch-{report.best_epoch}" / "ranker", device="cpu")
    ex = training["val"][0]
    np.testing.assert_array_equal(R.comparison_matrix(best, ex), R.comparison_matrix(same, ex))
    accuracy = [v["pairwise_accuracy"] for v in report.val]
    assert report.best_epoch == 1 + int(np.argmax(accuracy))  # best on validation, earlier epoch on a tie


@pytest.mark.slow
def test_training_resumes_from_the_last_completed_epoch(training):
    first, second, third = training["reports"]
    out = training["out"]
    assert (first.epochs_completed, first.resumed_from_epoch) == (1, 0)
    assert (second.epochs_completed, second.resumed_from_epoch) == (2, 1)
    assert second.train_loss[0] == first.train_loss[0]  # epoch 1 kept, not retrained
    assert second.train_pairs == first.train_pairs == 24  # the second call trained one epoch only
    assert (third.resumed_from_epoch, third.train_pairs, third.train_loss) == (2, 0, second.train_loss)
    state = json.loads((out / T.STATE_FILE).read_text())
    assert state["completed_epochs"] == 2
    names = {p.name for p in out.iterdir()}
    assert not [n for n in names if n.endswith((".partial", ".old"))]  # nothing half-written left
    assert {"epoch-2", f"epoch-{second.best_epoch}", "best", T.STATE_FILE} == names
    with pytest.raises(ValueError, match="other settings"):
        R.train_pairranker(training["train"], training["val"], replace(TRAIN_CONFIG, lr=3e-4), out, progress=False)


@pytest.mark.slow
def test_a_killed_run_resumes_to_exactly_what_an_uninterrupted_run_gives(tmp_path, monkeypatch):
    train = synthetic_examples()[:4]
    config = replace(TRAIN_CONFIG, pairs_per_input=2, epochs=2)  # one optimizer step per epoch, no validation
    whole = R.train_pairranker(train, [], config, tmp_path / "whole", progress=False)

    resample = R._PairSampler.resample

    def killed_in_epoch_two(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt  # as if the process died after epoch 1 was checkpointed
        resample(self, epoch)

    monkeypatch.setattr(R._PairSampler, "resample", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        R.train_pairranker(train, [], config, tmp_path / "killed", progress=False)
    monkeypatch.setattr(R._PairSampler, "resample", resample)
    resumed = R.train_pairranker(train, [], config, tmp_path / "killed", progress=False)

    assert resumed.resumed_from_epoch == 1 and resumed.train_pairs == 8
    assert resumed.train_loss == whole.train_loss  # bit for bit: same pairs, same dropout, restored optimizer
    assert resumed.best_epoch == whole.best_epoch == 2  # no validation: the last epoch is kept
    ex = train[0]
    after_resume = R.PairRankerModel.from_pretrained(resumed.best_dir, device="cpu")
    uninterrupted = R.PairRankerModel.from_pretrained(whole.best_dir, device="cpu")
    np.testing.assert_allclose(R.comparison_matrix(after_resume, ex), R.comparison_matrix(uninterrupted, ex),
                               rtol=0, atol=1e-6)
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.slow
def test_train_or_load_keys_its_folder_by_config_and_data_and_loads_a_finished_run(training, tmp_path):
    train, val = training["train"], training["val"]
    config = replace(TRAIN_CONFIG, epochs=2)
    folder = R.run_dir(train, config, tmp_path)
    assert folder == R.run_dir(train, replace(config, epochs=5), tmp_path)  # more epochs continue the same run
    assert folder != R.run_dir(train, replace(config, lr=3e-4), tmp_path)
    assert folder != R.run_dir(train[:-1], config, tmp_path)
    shutil.copytree(training["out"], folder)  # a finished run, as a previous session would leave it
    ranker, report = R.train_or_load(train, val, config, root=tmp_path, progress=False)
    assert report.train_pairs == 0 and report.epochs_completed == 2  # loaded, nothing retrained
    assert report.epoch_seconds == training["reports"][1].epoch_seconds and report.pairs_per_epoch == 24
    first = training["reports"][1]
    expected = R.PairRankerModel.from_pretrained(first.best_dir, device="cpu")
    ranker.config = expected.config = replace(ranker.config, bf16=False)  # fp32: batching changes nothing visible
    matrices = R.example_matrices(ranker, val)
    np.testing.assert_allclose(matrices[0], R.comparison_matrix(expected, val[0]), rtol=0, atol=1e-5)
    winners, used = R.bubble_examples(ranker, val)
    assert used == [len(ex["candidates"]) - 1 for ex in val]
    assert winners == [R.bubble_winner(m) for m in matrices]  # bubble run for real = bubble over the matrix


def test_length_grouping_keeps_the_pairs_and_batches_similar_lengths():
    pools, _ = training_inputs(synthetic_examples(), ("bleu", "rougeL"), what="PairRanker")
    plain = R._PairSampler(pools, pairs_per_input=4, seed=1)
    grouped = R._PairSampler(pools, pairs_per_input=4, seed=1)
    length = lambda item: len(item[1]) + len(item[2])  # noqa: E731
    grouped.group_by_length(batch_size=4, length_of=length)
    grouped.resample(0)
    assert sorted(i[:3] for i in grouped.items) == sorted(i[:3] for i in plain.items)  # same pairs, new order

    def padding(items):  # the characters a batch of 4 pads with, summed over batches
        batches = [items[k : k + 4] for k in range(0, len(items), 4)]
        return sum(max(map(length, b)) * len(b) - sum(map(length, b)) for b in batches)

    assert padding(grouped.items) < padding(plain.items)
    again = R._PairSampler(pools, pairs_per_input=4, seed=1)
    again.group_by_length(batch_size=4, length_of=length)
    again.resample(0)
    assert [i[:3] for i in again.items] == [i[:3] for i in grouped.items]  # still seeded


@pytest.mark.slow
def test_frozen_lower_layers_do_not_move_in_training_and_the_upper_ones_do(tmp_path):
    config = replace(TRAIN_CONFIG, freeze_layers=4, epochs=1)
    fresh = R.PairRankerModel.from_backbone(config)
    assert not any(p.requires_grad for p in fresh.encoder.embeddings.parameters())
    assert fresh.encoder.encoder.layer[4].attention.self.query.weight.requires_grad
    examples = synthetic_examples()
    report = R.train_pairranker(examples[:8], examples[8:], config, tmp_path, progress=False)
    trained = R.PairRankerModel.from_pretrained(report.best_dir, device="cpu")
    before, after = fresh.state_dict(), trained.state_dict()
    frozen = [k for k in before if k.startswith(("encoder.embeddings.", "encoder.encoder.layer.0.", "encoder.encoder.layer.3."))]
    moved = [k for k in before if k.startswith(("encoder.encoder.layer.5.", "head."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in moved)
    with pytest.raises(ValueError, match="only 6 layers"):
        R.PairRankerModel.from_backbone(replace(config, freeze_layers=7))
    with pytest.raises(ValueError, match="freeze_layers must be >= 0"):
        replace(config, freeze_layers=-1)


def test_the_cost_of_an_aggregation_is_counted_and_logged_before_the_run(ranker, caplog, monkeypatch):
    import logging

    lists = [["a", "b", "c"], ["a"] * 15]
    assert R.model_passes(lists, "max_logits") == 3 * 2 + 15 * 14 and R.model_passes(lists, "bubble") == 2 * 2 + 2 * 14
    candidates = ["Paris.", "Lyon.", "I don't know.", "The capital is Paris.", "Nice.", "Marseille."]
    with caplog.at_level(logging.INFO, logger="blender_lib.rankers"):
        picked = R.best_of_n(ranker, [QUESTION], [candidates])  # 6 > AUTO_BUBBLE_ABOVE: bubble
    assert picked == [R.bubble(ranker, QUESTION, candidates)[0]]
    assert "best_of_n: bubble over 1 inputs of up to 6 candidates = 10 model passes (bubble: 10, the full matrix: 30)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="blender_lib.rankers"):
        R.best_of_n(ranker, [QUESTION], [candidates[:3]])
    assert "best_of_n: max_logits over 1 inputs of up to 3 candidates = 6 model passes" in caplog.text
    monkeypatch.setattr(R, "LONG_RUN_PASSES", 5)  # a long run is announced as a warning
    with caplog.at_level(logging.WARNING, logger="blender_lib.rankers"):
        R.rank(ranker, [QUESTION], [candidates[:3]])
    assert caplog.records[-1].levelname == "WARNING" and "rank: max_logits" in caplog.records[-1].getMessage()

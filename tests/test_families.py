"""Label codecs, losses and decoders: exact strings on hand-made outputs, and overfitting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.families import (
    EOS,
    IGNORE_INDEX,
    AttentionFamily,
    ClassificationFamily,
    CTCFamily,
    LabelError,
    Prediction,
    attention_nbest,
    ctc_beam_search,
    ctc_greedy_decode,
    make_family,
)
from models.registry import build_model, input_spec
from synth.text import ExpressionGrammar, evaluate, task_grammar

DIGITS = list("0123456789")
EXPR = list("0123456789+-*()")


def ctc_outputs(frames: list[dict[str, float]], charset: list[str]) -> torch.Tensor:
    """Log-probs ``T, 1, C + 1`` from per-frame probabilities by character ('' = blank)."""
    out = torch.full((len(frames), 1, len(charset) + 1), 1e-6)
    for t, probs in enumerate(frames):
        for ch, p in probs.items():
            out[t, 0, 0 if ch == "" else charset.index(ch) + 1] = p
    return (out / out.sum(-1, keepdim=True)).log()


# --- CTC -----------------------------------------------------------------------------------------


def test_ctc_greedy_collapses_repeats_and_drops_blanks() -> None:
    family = make_family("crnn_vgg", EXPR)
    frames = ["1", "1", "", "1", "+", "+", "", "", "(", "(", "7", ")", ""]
    out = ctc_outputs([{ch: 0.9} for ch in frames], EXPR)
    [pred] = family.decode(out)
    assert pred.text == "11+(7)"
    expected = 0.9 / (0.9 + 1e-6 * 15)  # each frame's best class, renormalised
    assert pred.confidence == pytest.approx(expected ** len(frames), rel=1e-5)
    assert pred.top_k == [(pred.text, pred.confidence)]


def test_a_charset_with_the_space_reads_spaced_as_labels_are() -> None:
    """A model whose charset has the space may emit one at either end, two together or beside
    a hanzi, which no label holds and Tesseract's readings are cleaned of: its reading is
    spaced as labels are, by every decoder, so both are scored alike. Without the space in
    the charset nothing changes; a class's own text (the plots) stays as it is."""
    spaced = ["a", "b", "中", " "]
    frames = [" ", "", "a", " ", "", " ", "b", " ", "中", " ", ""]
    out = ctc_outputs([{ch: 0.9} for ch in frames], spaced)
    family = make_family("crnn_vgg", spaced)
    assert family.text_of([family.label_indices(" ")[0]]) == " "
    for decoder in ("greedy", "beam"):
        [pred] = family.decode(out, decoder=decoder)
        assert pred.text == "a b中" and all(" " not in t[:1] for t, _ in pred.top_k), decoder
    reader = make_family("reader", spaced)
    probs = torch.full((1, 6, 5), 0.01)
    for step, ch in enumerate([" ", "a", " ", " ", "b"]):
        probs[0, step, spaced.index(ch) + 1] = 0.9
    probs[0, 5, EOS] = 0.9
    assert reader.decode(probs.log())[0].text == "a b"
    # " a" and "a" are two beams, one reading: merged, their probabilities summed
    two = ["a", " "]
    out = ctc_outputs([{"": 0.5, " ": 0.5}, {"": 0.05, "a": 0.9, " ": 0.05}], two)
    [pred] = make_family("crnn_vgg", two).decode(out, decoder="beam", k=5)
    texts = [t for t, _ in pred.top_k]
    assert texts[0] == "a" and len(texts) == len(set(texts)), pred.top_k
    assert pred.confidence == pytest.approx(0.9, abs=1e-4)
    plain = list("ab中")
    [pred] = make_family("crnn_vgg", plain).decode(ctc_outputs([{ch: 0.9} for ch in "a中b"], plain))
    assert pred.text == "a中b"


def test_merged_readings_are_ranked_by_their_summed_probability() -> None:
    """Two beams reading alike (" b" and "b") merge into one reading worth their sum, which can
    outrank a beam that came before either: the n-best list is ordered after merging."""
    family = make_family("crnn_vgg", ["a", "b", " "])
    ranked = [("a", 0.4), (" b", 0.35), ("b", 0.25)]
    hypotheses = [(family.label_indices(t), math.log(p)) for t, p in ranked]
    top = family.readings_of(hypotheses, k=5)
    assert [t for t, _ in top] == ["b", "a"]
    assert [p for _, p in top] == pytest.approx([0.6, 0.4])
    assert family.readings_of(hypotheses, k=1) == [("b", pytest.approx(0.6))]


def test_ctc_beam_sums_alignments_where_greedy_does_not() -> None:
    # Two frames, blank 0.55 and "7" 0.45 each: the best path is "" (0.3025), but "7" has three
    # alignments (7 7, 7 -, - 7) worth 0.2025 + 0.2475 + 0.2475 = 0.6975.
    family = make_family("crnn_vgg", EXPR)
    out = ctc_outputs([{"": 0.55, "7": 0.45}] * 2, EXPR)
    [greedy] = family.decode(out, decoder="greedy")
    [beam] = family.decode(out, decoder="beam", beam_width=3, k=3)
    assert greedy.text == "" and greedy.confidence == pytest.approx(0.3025, rel=1e-3)
    assert beam.text == "7" and beam.confidence == pytest.approx(0.6975, rel=1e-3)
    assert [t for t, _ in beam.top_k[:2]] == ["7", ""]
    assert beam.top_k[1][1] == pytest.approx(0.3025, rel=1e-3)


def test_ctc_beam_nbest_is_ordered_and_exact() -> None:
    family = make_family("expr_crnn", EXPR)
    frames = [
        {"1": 0.7, "7": 0.3},
        {"": 1.0},
        {"+": 0.6, "-": 0.4},
        {"": 1.0},
        {"2": 0.8, "": 0.2},
    ]
    out = ctc_outputs(frames, EXPR)
    [pred] = family.decode(out, decoder="beam", beam_width=8, k=8)
    texts = [t for t, _ in pred.top_k]
    probs = [p for _, p in pred.top_k]
    assert texts[:5] == ["1+2", "1-2", "7+2", "7-2", "1+"]
    assert probs == sorted(probs, reverse=True)
    assert probs[0] == pytest.approx(0.7 * 0.6 * 0.8, rel=1e-3)
    assert probs[3] == pytest.approx(0.3 * 0.4 * 0.8, rel=1e-3)
    assert probs[4] == pytest.approx(0.7 * 0.6 * 0.2, rel=1e-3)
    assert sum(probs) <= 1.0 + 1e-6
    [greedy] = family.decode(out)
    assert greedy.text == pred.text == "1+2"


def test_ctc_grammar_decoder_keeps_readings_that_evaluate() -> None:
    # The best path reads "3+" (a dangling operator) and the beam's best text is "3+" too; held
    # to the expression grammar the decoder reads "3+4", with the probability the unconstrained
    # beam gives that same text.
    family = make_family("expr_crnn", EXPR)
    frames = [{"3": 0.8, "8": 0.2}, {"": 1.0}, {"+": 0.95, "-": 0.05}, {"": 0.6, "4": 0.4}]
    out = ctc_outputs(frames, EXPR)
    [greedy] = family.decode(out)
    [beam] = family.decode(out, decoder="beam", beam_width=8, k=8)
    [held] = family.decode(out, decoder="grammar", beam_width=8, k=8, grammar=ExpressionGrammar())
    assert greedy.text == beam.text == "3+"
    assert held.text == "3+4"
    assert held.confidence == pytest.approx(dict(beam.top_k)["3+4"], rel=1e-6)
    assert [t for t, _ in held.top_k] == ["3+4", "8+4", "3-4", "8-4"]  # all whole, best first
    for text, _ in held.top_k:
        evaluate(text)  # each one parses


def test_ctc_grammar_of_the_drawn_expressions_reads_what_the_task_draws() -> None:
    # "123" parses, so the general grammar reads it (p 0.6); the task's settings draw no
    # single operand and no three-digit number, so their grammar reads "1+3" (p 0.4).
    family = make_family("expr_crnn", EXPR)
    frames = [{"1": 1.0}, {"": 1.0}, {"2": 0.6, "+": 0.4}, {"": 1.0}, {"3": 1.0}]
    out = ctc_outputs(frames, EXPR)
    settings = {"baidu_fraction": 0.7, "operands": [2, 4], "max_digits": 2, "operators": "+-*"}
    [general] = family.decode(out, decoder="grammar", grammar=ExpressionGrammar())
    [drawn] = family.decode(out, decoder="grammar", grammar=task_grammar("expr", settings))
    assert general.text == "123" and general.confidence == pytest.approx(0.6, rel=1e-3)
    assert drawn.text == "1+3" and drawn.confidence == pytest.approx(0.4, rel=1e-3)


def test_ctc_grammar_never_extends_a_prefix_it_refuses() -> None:
    # ")" is likelier than "(" in the first frame, but no expression starts with ")": the
    # search reads "(1)" where the plain beam reads ")1)".
    family = make_family("expr_crnn", EXPR)
    frames = [{")": 0.6, "(": 0.4}, {"": 1.0}, {"1": 1.0}, {"": 1.0}, {")": 1.0}]
    out = ctc_outputs(frames, EXPR)
    assert family.decode(out, decoder="beam")[0].text == ")1)"
    [held] = family.decode(out, decoder="grammar", grammar=ExpressionGrammar())
    assert held.text == "(1)" and held.confidence == pytest.approx(0.4, rel=1e-3)


def test_ctc_grammar_without_a_whole_text_returns_the_best_prefixes() -> None:
    # Every frame says "(" for sure: no whole expression is reachable, so the decoder returns
    # the likeliest prefixes as they are (the caller sees a reading that does not parse).
    family = make_family("expr_crnn", EXPR)
    out = ctc_outputs([{"(": 1.0}, {"": 1.0}, {"(": 1.0}], EXPR)
    [held] = family.decode(out, decoder="grammar", grammar=ExpressionGrammar())
    assert held.text == "((" and held.grammatical is False


def test_a_grammar_decoders_fallback_prefix_is_given_no_value(tmp_path) -> None:
    """ "53" is a number, which the drawn expressions' grammar (two operands at least) rejects:
    the decoder's fallback prefix was given the value 53, and a label whose value is 53 counted
    it as read right. It is printed and scored with no value; a whole reading keeps its own."""
    from models.evaluate import Reading, Sample, prediction_rows, sample_metrics

    family = make_family("expr_crnn", EXPR)
    settings = {"baidu_fraction": 0.0, "operands": [2, 4], "max_digits": 2, "operators": "+-*"}
    grammar = task_grammar("expr", settings)
    out = ctc_outputs([{"5": 1.0}, {"": 1.0}, {"3": 1.0}], EXPR)
    [held] = family.decode(out, decoder="grammar", grammar=grammar)
    assert held.text == "53" and held.grammatical is False
    [whole] = family.decode(
        ctc_outputs([{"5": 1.0}, {"": 1.0}, {"+": 1.0}, {"": 1.0}, {"3": 1.0}], EXPR),
        decoder="grammar",
        grammar=grammar,
    )
    assert whole.text == "5+3" and whole.grammatical is True
    [greedy] = family.decode(out)
    assert greedy.grammatical is True  # no grammar: nothing to fall back from
    samples = [Sample("a", None, "50+3", "F", value=53), Sample("b", None, "5+3", "F", value=8)]
    readings = [Reading("53", 0.5, grammatical=False), Reading("5+3", 0.9)]
    assert sample_metrics(samples, readings, "expr", False)["value_acc"] == 0.5
    rows = prediction_rows(samples, readings, "expr")
    assert [(r["reading_value"], r["value_correct"]) for r in rows] == [("", 0), (8, 1)]
    ungrammared = [Reading("53", 0.5), Reading("5+3", 0.9)]  # as it was: 53 taken for right
    assert sample_metrics(samples, ungrammared, "expr", False)["value_acc"] == 1.0

    # models.predict (what recognition prints) gives the fallback no value either
    from PIL import Image

    import models.predict as predict_module
    from models.checkpoint import ModelMeta

    class Decoded:
        def decode(self, *args, **kwargs):
            return [
                Prediction("53", 0.5, [("53", 0.5)], grammatical=False),
                Prediction("5+3", 0.9, [("5+3", 0.9)]),
            ]

    meta = ModelMeta("expr_crnn", {}, EXPR, "expr", input_spec("expr_crnn"))
    images = [Image.new("L", (96, 32), 255) for _ in range(2)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(predict_module, "make_family", lambda *args: Decoded())
        preds = predict_module.predict(torch.nn.Identity(), meta, images, decoder="beam")
    assert [(p.text, p.value) for p in preds] == [("53", None), ("5+3", 8)]


def test_grammar_decoder_needs_a_grammar_and_a_ctc_model() -> None:
    out = ctc_outputs([{"1": 1.0}], EXPR)
    with pytest.raises(ValueError, match="needs a grammar"):
        make_family("expr_crnn", EXPR).decode(out, decoder="grammar")
    with pytest.raises(ValueError, match="constrains CTC decoding"):
        make_family("hanzi_cnn", DIGITS).decode(torch.zeros(1, 10), decoder="grammar")
    with pytest.raises(ValueError, match="constrains CTC decoding"):
        make_family("reader", DIGITS).decode(torch.zeros(1, 5, 11), decoder="grammar")
    lp = out[:, 0].numpy()
    with pytest.raises(ValueError, match="symbols of all 16 classes"):
        ctc_beam_search(lp, grammar=ExpressionGrammar(), symbols=EXPR)  # blank missing


def test_ctc_repeated_characters_need_a_blank() -> None:
    lp = ctc_outputs([{"1": 1}, {"": 1}, {"1": 1}, {"1": 1}], DIGITS)[:, 0].numpy()
    labels, _ = ctc_greedy_decode(lp)
    assert labels == [2, 2]  # "11": class 2 is "1"
    [(best, logp), *_] = ctc_beam_search(lp, beam_width=4)
    assert best == (2, 2) and math.exp(logp) == pytest.approx(1.0, abs=1e-4)


def test_ctc_widths_trim_padding_frames() -> None:
    family = make_family("crnn_vgg", DIGITS)
    # Two samples padded to 40 px (T = 11); the first is 16 px wide (T = 5), then "9" in padding.
    frames = torch.full((11, 2, 11), -20.0)
    frames[:, :, 0] = 0.0
    frames[1, 0, 4], frames[1, 1, 6] = 5.0, 5.0  # "3" and "5" in the real frames
    frames[8, 0, 10] = 5.0  # "9" beyond the first sample's width
    untrimmed, _ = family.decode(frames)
    trimmed, other = family.decode(frames, widths=[16, 40])
    assert untrimmed.text == "39" and trimmed.text == "3" and other.text == "5"
    for widths in ([16, 80], [-8, 40]):  # 21 frames of 11; -1 frames (no image has fewer than 1)
        with pytest.raises(ValueError, match=r"frame counts \[-?\d+, \d+\] outside 1\.\.11"):
            family.decode(frames, widths=widths)


def test_align_loss_reads_each_character_at_the_frame_over_its_centre() -> None:
    """`CTCFamily.align_loss`: the cross-entropy of each character at frame
    ``floor(x * L / w)`` of its own sample (``L`` frames for ``w`` px), averaged over the
    batch's characters; the gradient reaches those frames alone."""
    family = make_family("crnn_vgg", DIGITS)
    torch.manual_seed(0)
    # two samples padded to 40 px (T = 11): 24 px wide (L = 7) with "12", 40 px with "3"
    logits = torch.randn(11, 2, 11, requires_grad=True)
    targets = family.encode(["12", "3"])
    centers = [(3.0, 20.0), (39.0,)]
    loss = family.align_loss(logits, targets, centers, torch.tensor([24, 40]))
    lp = logits.detach().log_softmax(-1)
    # frames 3 * 7 // 24 = 0 and 20 * 7 // 24 = 5 of sample 0 ("1" is class 2, "2" class 3);
    # 39 * 11 // 40 = 10 of sample 1 ("3", class 4)
    expected = -(lp[0, 0, 2] + lp[5, 0, 3] + lp[10, 1, 4]) / 3
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-6)
    loss.backward()
    touched = logits.grad.abs().sum(-1).nonzero().tolist()
    assert touched == [[0, 0], [5, 0], [10, 1]]
    # a frame that reads its character: no loss left there
    sure = torch.full((11, 1, 11), -30.0)
    sure[4, 0, 8] = 30.0  # "7" over x = 17 of a 40-px image (17 * 11 // 40 = 4)
    assert float(family.align_loss(sure, family.encode(["7"]), [(17.0,)], [40])) < 1e-6
    with pytest.raises(ValueError, match="sample 1 of the batch has no centres for its 1"):
        family.align_loss(logits, targets, [(3.0, 20.0), None], torch.tensor([24, 40]))
    with pytest.raises(ValueError, match="sample 0 of the batch has 1 centres for its 2"):
        family.align_loss(logits, targets, [(3.0,), (39.0,)], torch.tensor([24, 40]))


def test_ctc_loss_uses_per_sample_lengths() -> None:
    torch.manual_seed(0)
    family = make_family("crnn_vgg", DIGITS)
    logits = torch.randn(11, 2, 11)
    targets = family.encode(["12", "3"])
    batch = family.loss(logits, targets, widths=torch.tensor([24, 40]))
    one = F.ctc_loss(
        logits[:7, :1].log_softmax(-1), torch.tensor([[2, 3]]), [7], [2], reduction="mean"
    )
    two = F.ctc_loss(logits[:, 1:].log_softmax(-1), torch.tensor([[4]]), [11], [1])
    assert batch.item() == pytest.approx(((one + two) / 2).item(), rel=1e-5)


def test_ctc_loss_is_fp32_and_never_inf() -> None:
    family = make_family("crnn_vgg", DIGITS)
    logits = torch.randn(3, 2, 11, dtype=torch.bfloat16, requires_grad=True)
    loss = family.loss(logits, family.encode(["1234567", "1"]))  # 7 chars cannot fit 3 frames
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad.float()).all()


def test_ctc_encode_layout_and_errors() -> None:
    family = make_family("expr_crnn", EXPR)
    targets = family.encode(["1+2", "(9)"])
    assert targets.indices.tolist() == [2, 11, 3, 14, 10, 15]
    assert targets.lengths.tolist() == [3, 3]
    with pytest.raises(LabelError, match=r"label '': empty"):
        family.encode(["1", ""])
    with pytest.raises(LabelError, match=r"label '3/4': character '/' \(U\+002F\)") as e:
        family.encode(["3/4"])
    assert e.value.text == "3/4" and e.value.char == "/"


def test_ctc_unknown_decoder() -> None:
    with pytest.raises(ValueError, match="greedy, beam"):
        make_family("crnn_vgg", DIGITS).decode(torch.zeros(3, 1, 11), decoder="viterbi")


# --- classification and attention ----------------------------------------------------------------


def test_classification_top_k() -> None:
    family = make_family("hanzi_cnn", list("啊阿埃挨哎"))
    assert isinstance(family, ClassificationFamily) and family.num_classes == 5
    logits = torch.tensor([[0.0, 3.0, 1.0, -1.0, 2.0]])
    [pred] = family.decode(logits, k=3)
    probs = logits.softmax(-1)[0]
    assert pred.text == "阿" and pred.confidence == pytest.approx(probs[1].item())
    assert [t for t, _ in pred.top_k] == ["阿", "哎", "埃"]
    [every] = family.decode(logits, k=8)  # more asked than there are classes: all five
    assert [t for t, _ in every.top_k] == ["阿", "哎", "埃", "啊", "挨"]
    assert family.encode(["埃", "啊"]).indices.tolist() == [2, 0]
    with pytest.raises(LabelError, match="one character"):
        family.encode(["啊阿"])
    with pytest.raises(LabelError, match="'吖'"):
        family.encode(["吖"])


def test_a_classifier_refuses_an_empty_label() -> None:
    # An empty label would give a batch one target short of its images (a size mismatch deep in
    # the loss), not an error naming the label.
    family = make_family("hanzi_cnn", list("啊阿"))
    with pytest.raises(LabelError, match="expected one character, got 0"):
        family.encode(["啊", ""])


def test_attention_encode_layout() -> None:
    family = make_family("reader", DIGITS)
    assert isinstance(family, AttentionFamily) and family.steps == 5
    targets = family.encode(["12", "3456", ""])
    i = IGNORE_INDEX
    assert targets.indices.tolist() == [
        [2, 3, EOS, i, i],
        [4, 5, 6, 7, EOS],
        [EOS, i, i, i, i],
    ]
    assert targets.lengths.tolist() == [3, 5, 1]
    with pytest.raises(LabelError, match="at most 4"):
        family.encode(["12345"])
    assert make_family("reader", DIGITS, {"max_len": 6}).encode(["123456"]).indices.shape == (1, 7)


def test_attention_decode_stops_at_terminal_symbol() -> None:
    family = make_family("reader", DIGITS)
    probs = torch.full((2, 5, 11), 0.01)
    for row, seq in enumerate([[8, 10, EOS, 3, 3], [2, 2, 2, 2, 2]]):
        for step, c in enumerate(seq):
            probs[row, step, c] = 0.9
    logits = probs.log()
    masks = torch.ones(2, 5, 40, 40)
    first, second = family.decode((logits, masks))
    p = (probs / probs.sum(-1, keepdim=True))[0, 0, 8].item()
    assert first.text == "79" and first.confidence == pytest.approx(p**3, rel=1e-5)
    # No terminal symbol in 5 steps: the text ends at max_len (4), the last step's terminal
    # counted at its probability (0.01 before normalising); it read "11111" beyond max_len.
    q = (probs / probs.sum(-1, keepdim=True))[1, 4, EOS].item()
    assert second.text == "1111" and second.confidence == pytest.approx(p**4 * q, rel=1e-5)
    [beam] = family.decode((logits[1:], masks[1:]), decoder="beam", k=50)
    assert all(len(text) <= 4 for text, _ in beam.top_k) and len(beam.top_k) == 50
    assert family.decode(logits)[0].text == "79"  # a bare logits tensor (ONNX) works too


def test_attention_loss_ignores_steps_after_terminal() -> None:
    family = make_family("reader", DIGITS)
    targets = family.encode(["7"])
    logits = torch.zeros(1, 5, 11, requires_grad=True)
    family.loss(logits, targets).backward()
    assert logits.grad[0, :2].abs().sum() > 0
    assert logits.grad[0, 2:].abs().sum() == 0
    with pytest.raises(ValueError, match="max_len"):
        family.loss(torch.zeros(1, 7, 11), targets)


def test_label_smoothing_mixes_in_the_uniform_target() -> None:
    """loss = (1 - e) * NLL(label) + e * mean over classes of NLL(class), for the classifier and
    the reader (whose steps after the terminal symbol stay ignored); CTC refuses it."""
    logits = torch.tensor([[2.0, 0.5, -1.0, 0.0]])
    nll = -logits.log_softmax(-1)[0]
    family = ClassificationFamily(list("abcd"))
    targets = family.encode(["b"])
    assert float(family.loss(logits, targets)) == pytest.approx(float(nll[1]))
    expected = 0.9 * nll[1] + 0.1 * nll.mean()
    smoothed = family.loss(logits, targets, label_smoothing=0.1)
    assert float(smoothed) == pytest.approx(float(expected), rel=1e-6)

    reader = make_family("reader", DIGITS)
    steps = torch.randn(1, 5, 11, requires_grad=True)
    reader.loss(steps, reader.encode(["7"]), label_smoothing=0.2).backward()
    assert steps.grad[0, :2].abs().sum() > 0 and steps.grad[0, 2:].abs().sum() == 0
    step_nll = -steps.detach()[0, :2].log_softmax(-1)
    gold = step_nll[0, 8] + step_nll[1, EOS]  # "7" is class 8, then the terminal symbol
    expected = (0.8 * gold + 0.2 * step_nll.mean(-1).sum()) / 2
    loss = reader.loss(steps.detach(), reader.encode(["7"]), label_smoothing=0.2)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    ctc = make_family("crnn_vgg", DIGITS)
    with pytest.raises(ValueError, match="CTC losses take no smoothing"):
        ctc.loss(torch.zeros(9, 1, 11), ctc.encode(["7"]), label_smoothing=0.1)


def test_charset_is_checked() -> None:
    with pytest.raises(ValueError, match="twice"):
        make_family("crnn_vgg", list("0120"))
    with pytest.raises(ValueError, match="single character"):
        make_family("crnn_vgg", ["0", "ab"])
    with pytest.raises(ValueError, match="empty"):
        make_family("hanzi_cnn", [])
    with pytest.raises(ValueError, match="unknown model"):
        make_family("transformer", DIGITS)
    assert isinstance(make_family("crnn_grcnn", DIGITS), CTCFamily)


def test_prediction_fields() -> None:
    pred = Prediction("1+2", 0.5, [("1+2", 0.5)])
    assert pred.value is None
    pred.value = 3
    assert pred == Prediction("1+2", 0.5, [("1+2", 0.5)], 3)


# --- every family learns a handful of fixed samples ---------------------------------------------

OVERFIT = {
    "hanzi_cnn": ({"width": 0.125, "dropout": 0.0}, 64, ["7", "(", "+", "3", "0"]),
    "crnn_vgg": ({"width": 0.125, "hidden": 32}, 64, ["12+3", "4", "99", "(1)", "7*8"]),
    "reader": ({"width": 0.25, "hidden": 64}, 40, ["12", "3+45", "7", "00", "(8)"]),
    "crnn_grcnn": (
        {"width": 0.125, "hidden": 32, "iterations": 2},
        64,
        ["12+3", "4", "99", "(1)", "7*8"],
    ),
    "expr_crnn": (
        {"width": 0.25, "hidden": 32, "dense": 32, "dropout": 0.0},
        96,
        ["(7+5)*4", "12-3", "9*9", "1+2+3", "8"],
    ),
}


def overfit(name: str, max_steps: int = 600) -> tuple[int, list[str]]:
    """Train on 5 fixed noise images until eval-mode decoding gets every label exactly."""
    kwargs, width, labels = OVERFIT[name]
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    spec = input_spec(name, **kwargs)
    height = spec.get("size", spec.get("height"))
    x = torch.rand(len(labels), 1, height, width, generator=g)
    model = build_model(name, len(EXPR), **kwargs)
    family = make_family(name, EXPR, kwargs)
    targets = family.encode(labels)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    got: list[str] = []
    for step in range(1, max_steps + 1):
        model.train()
        loss = family.loss(model(x), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0:
            model.eval()
            with torch.no_grad():
                got = [p.text for p in family.decode(model(x))]
            if got == labels:
                return step, got
    return max_steps, got


@pytest.mark.parametrize("name", ["hanzi_cnn", "crnn_vgg", "reader"])  # one per family
def test_overfit_each_family(name: str) -> None:
    _, got = overfit(name)
    assert got == OVERFIT[name][2]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["crnn_grcnn", "expr_crnn"])
def test_overfit_slow_models(name: str) -> None:
    _, got = overfit(name)
    assert got == OVERFIT[name][2]


def test_beam_search_matches_brute_force_on_random_outputs() -> None:
    # With a beam wide enough to keep everything, the n-best probabilities are exact: compare with
    # summing every alignment of a 3-class, 4-frame output.
    rng = np.random.default_rng(0)
    lp = np.log(rng.dirichlet(np.ones(3), size=4))
    totals: dict[tuple[int, ...], float] = {}
    for path in np.ndindex(*(3,) * 4):
        labels, _ = ctc_greedy_decode(np.eye(3)[list(path)])  # one-hot: the path itself
        totals[tuple(labels)] = totals.get(tuple(labels), 0.0) + math.exp(
            sum(lp[t, c] for t, c in enumerate(path))
        )
    beams = ctc_beam_search(lp, beam_width=100, prune=0)
    assert len(beams) == len(totals)
    for labels, logp in beams:
        assert math.exp(logp) == pytest.approx(totals[labels], rel=1e-9)


def test_attention_nbest_matches_brute_force() -> None:
    # Three steps over {EOS, a, b}: every text of up to 2 characters ends with EOS at its step;
    # one of 3 characters (no terminal symbol) is no reading: a reader of max_len 2 runs 3 steps
    # and was taught no longer text.
    rng = np.random.default_rng(1)
    lp = np.log(rng.dirichlet(np.ones(3), size=3))
    totals: dict[tuple[int, ...], float] = {}
    for path in np.ndindex(3, 3, 3):
        labels = []
        logp = 0.0
        for step, c in enumerate(path):
            logp += lp[step, c]
            if c == EOS:
                totals[tuple(labels)] = math.exp(logp)
                break  # the steps after the terminal symbol do not change the text
            labels.append(c)
    best = sorted(totals.items(), key=lambda kv: -kv[1])[:6]
    got = attention_nbest(lp, k=6)
    assert [labels for labels, _ in got] == [labels for labels, _ in best]
    for (_, logp), (_, p) in zip(got, best, strict=True):
        assert math.exp(logp) == pytest.approx(p, rel=1e-9)
    assert len(totals) == 1 + 2 + 4 and all(len(labels) <= 2 for labels, _ in got)
    # the texts partition the paths that end, which is all but those of 3 characters
    assert sum(totals.values()) == pytest.approx(1.0 - np.exp(lp[:, 1:]).sum(1).prod())


def test_attention_decode_top_k() -> None:
    family = make_family("reader", DIGITS)
    probs = torch.full((1, 5, 11), 0.001)
    probs[0, 0, 2], probs[0, 0, 8] = 0.7, 0.29  # "1" or "7"
    probs[0, 1, EOS] = 0.99
    [pred] = family.decode(probs.log(), decoder="beam", k=3)
    assert pred.text == "1"
    assert [t for t, _ in pred.top_k[:2]] == ["1", "7"] and len(pred.top_k) == 3
    scale = 1 / probs[0, 0].sum().item() / probs[0, 1].sum().item()
    assert pred.top_k[1][1] == pytest.approx(0.29 * 0.99 * scale, rel=1e-5)
    # greedy has no alternatives, as greedy CTC: its reading alone
    [greedy] = family.decode(probs.log(), k=3)
    assert greedy.top_k == [(greedy.text, greedy.confidence)] == [pred.top_k[0]]


def test_attention_beam_reads_the_most_likely_text_not_the_greedy_one() -> None:
    # "1" beats the terminal symbol at the first step (0.55 against 0.45), so greedy reads "12",
    # but "" (0.45) is more likely than "12" (0.55 * 0.45 = 0.2475) or any other text.
    family = make_family("reader", DIGITS)
    probs = torch.full((1, 5, 11), 1e-6)
    probs[0, 0, 2], probs[0, 0, EOS] = 0.55, 0.45
    probs[0, 1, 3], probs[0, 1, 4], probs[0, 1, EOS] = 0.45, 0.3, 0.25
    probs[0, 2:, EOS] = 1.0
    logits = probs.log()
    [greedy] = family.decode(logits, k=4)
    [beam] = family.decode(logits, decoder="beam", k=4)
    assert greedy.text == "12"
    assert [t for t, _ in beam.top_k] == ["", "12", "13", "1"]
    probs = [p for _, p in beam.top_k]
    assert probs == sorted(probs, reverse=True)
    assert probs == pytest.approx([0.45, 0.2475, 0.165, 0.1375], rel=1e-4)
    assert (beam.text, beam.confidence) == beam.top_k[0]
    assert beam.top_k[1][1] == pytest.approx(greedy.confidence, rel=1e-9)


def test_attention_beam_keeps_the_greedy_reading_first_in_an_exact_tie() -> None:
    # Powers of two, so the three texts' probabilities are exactly equal: "" (0.25), "1"
    # (0.5 * 0.5) and "12" (0.5 * 0.5 * 1). Greedy reads "1" (the terminal symbol wins the tie
    # at the second step); the n-best search finds "" first.
    family = make_family("reader", DIGITS)
    probs = torch.zeros(1, 5, 11)
    probs[0, 0, 2], probs[0, 0, 3], probs[0, 0, EOS] = 0.5, 0.25, 0.25
    probs[0, 1, 3], probs[0, 1, EOS] = 0.5, 0.5
    probs[0, 2:, EOS] = 1.0
    [greedy] = family.decode(probs.log(), k=3)
    [beam] = family.decode(probs.log(), decoder="beam", k=3)
    assert greedy.text == "1"
    assert [t for t, _ in beam.top_k] == ["1", "", "12"] and beam.text == "1"
    assert len({p for _, p in beam.top_k}) == 1


# --- a model's output against its family's layout ------------------------------------------------


def test_ctc_output_batch_first_or_without_a_blank_is_named() -> None:
    """A model breaking the CTC layout (time first, C + 1 classes) fails naming its output's
    shape and the layout, not the caller's widths or a CER of 1.0."""
    family = make_family("crnn_vgg", EXPR)
    targets = family.encode(["1+2", "3"])
    batch_first = torch.randn(2, 9, len(EXPR) + 1)  # N, T, C + 1
    with pytest.raises(ValueError) as e:
        family.loss(batch_first, targets, widths=[32, 32])
    assert str(e.value) == (
        "model 'crnn_vgg' returned logits of shape (2, 9, 16): a ctc model returns T, N, C + 1 "
        "(time first, class 0 the blank), with C = 15 characters and N = 2 images; it looks "
        "batch first (models/registry.py MODELS; README.md, 'Adding an architecture')"
    )
    no_blank = torch.randn(9, 2, len(EXPR))
    for call in (lambda: family.loss(no_blank, targets), lambda: family.decode(no_blank)):
        with pytest.raises(
            ValueError, match=r"shape \(9, 2, 15\): a ctc model returns T, N, C \+ 1"
        ) as e:
            call()
        assert "it is one class short: the class 0 its family adds" in str(e.value)
        assert "batch first" not in str(e.value)
    # widths whose frame counts overrun the logits also name the registry's output_length
    with pytest.raises(
        ValueError, match=r"output_length of model 'crnn_vgg' \(models/registry\.py MODELS\)"
    ):
        family.loss(torch.randn(9, 2, len(EXPR) + 1), targets, widths=[400, 32])


def test_ctc_frames_other_than_output_length_counts_are_named() -> None:
    """The training loop's check of each step: frames one short or one over the count of
    output_length for the batch's width (which the loss would take without a word)."""
    family = make_family("crnn_vgg", EXPR)
    images = torch.rand(2, 1, 32, 64)  # crnn_vgg: 64 // 4 + 1 = 17 frames
    family.check_output(torch.randn(17, 2, len(EXPR) + 1), images)
    for frames in (16, 18):
        with pytest.raises(ValueError) as e:
            family.check_output(torch.randn(frames, 2, len(EXPR) + 1), images)
        assert str(e.value) == (
            f"model 'crnn_vgg' gave {frames} frames for images 64 px wide, but its output_length "
            "counts 17 (models/registry.py MODELS): the CTC loss takes each image's frames from "
            "output_length, so the two must agree"
        )


def test_a_ctc_model_or_classifier_returning_a_tuple_is_named() -> None:
    """The first item was taken as the logits whatever the family: such a model trained and was
    evaluated, then failed at its ONNX export with an AttributeError."""
    ctc = make_family("crnn_vgg", EXPR)
    images = torch.rand(2, 1, 32, 64)
    logits = torch.randn(17, 2, len(EXPR) + 1)
    for call in (
        lambda out: ctc.check_output(out, images),
        lambda out: ctc.loss(out, ctc.encode(["1", "2"])),
        lambda out: ctc.decode(out),
    ):
        with pytest.raises(ValueError) as e:
            call((logits, None))
        assert str(e.value) == (
            "model 'crnn_vgg' returned a tuple of 2: a ctc model returns one tensor, its logits "
            "T, N, C + 1 (time first, class 0 the blank) (models/registry.py MODELS; README.md, "
            "'Adding an architecture')"
        )
    hanzi = make_family("hanzi_cnn", DIGITS)
    with pytest.raises(ValueError, match=r"'hanzi_cnn' returned a list of 1: a classification"):
        hanzi.loss([torch.randn(3, 10)], hanzi.encode(["1", "2", "3"]))


def test_classification_and_attention_outputs_are_checked() -> None:
    hanzi = make_family("hanzi_cnn", DIGITS)
    with pytest.raises(ValueError, match=r"'hanzi_cnn' returned logits of shape \(3, 11\)"):
        hanzi.loss(torch.randn(3, 11), hanzi.encode(["1", "2", "3"]))
    reader = make_family("reader", DIGITS)
    logits = torch.randn(2, 5, len(DIGITS) + 1)
    reader.check_output((logits, torch.rand(2, 5, 40, 40)))
    with pytest.raises(ValueError, match="'reader' returned Tensor: an attention model returns"):
        reader.check_output(logits)
    with pytest.raises(ValueError, match=r"N = 3 images"):
        reader.loss(logits, reader.encode(["1", "2", "3"]))

"""KV 缓存的约定：任何提示词、任何长度，生成时每一步的 logits 都与 v11 自己的模型（不用缓存、每步全部重算）一致，
贪心输出一字不差；每次 generate 都从空缓存开始；预填充填满每一层，解码每步只加一个位置，缓存永远不超过 block_size。"""
import pytest
import torch

from conftest import load_script

V11 = load_script("babygpt_v11_hyper_params.py")
PLAIN = load_script("babygpt_sample.py")
KV = load_script("babygpt_sample_with_kvcache.py")
BLOCK_SIZE = 16
VOCAB = 50


def twin_models(n_layer, seed=0):
    """同一组随机权重分别装进 v11 的模型、babygpt_sample.py 的模型和带缓存的模型，都切到 eval()。"""
    torch.manual_seed(seed)
    args = dict(vocab_size=VOCAB, n_embd=24, n_head=3, n_layer=n_layer, block_size=BLOCK_SIZE, dropout=0.2)
    reference = V11.BabyGPT(**args).eval()
    plain, cached = PLAIN.BabyGPT(**args), KV.BabyGPT(**args)
    plain.load_state_dict(reference.state_dict())
    cached.load_state_dict(reference.state_dict())
    return reference, plain.eval(), cached.eval()


def reference_greedy(reference, prompt, steps):
    """不用缓存、每步把最后 block_size 个字整个重算：返回生成的字和每一步最后一个位置的 logits。"""
    idx, all_logits = prompt, []
    with torch.no_grad():
        for _ in range(steps):
            logits = reference(idx[:, -BLOCK_SIZE:])[0][:, -1, :]  # (B, vocab_size)
            all_logits.append(logits)
            idx = torch.cat((idx, logits.argmax(dim=-1, keepdim=True)), dim=1)
    return idx, torch.stack(all_logits)


def generate_recording_logits(model, prompt, steps, **kwargs):
    """调用 model.generate，同时用 lm_head 上的钩子记下每一步最后一个位置的 logits（除以温度之前）。"""
    recorded = []
    hook = model.lm_head.register_forward_hook(lambda module, inputs, output: recorded.append(output[:, -1, :]))
    try:
        idx = model.generate(prompt, steps, **kwargs)
    finally:
        hook.remove()
    return idx, torch.stack(recorded)


@pytest.mark.parametrize("n_layer", [1, 3])
@pytest.mark.parametrize("prompt_len", [1, 7, BLOCK_SIZE + 5])
def test_cached_generation_equals_full_recompute(n_layer, prompt_len):
    reference, plain, cached = twin_models(n_layer)
    prompt = torch.randint(VOCAB, (2, prompt_len))
    steps = 2 * BLOCK_SIZE  # 跨过窗口开始滑动的那一步
    expected_idx, expected = reference_greedy(reference, prompt, steps)
    for model, kwargs in [(cached, {"use_kv_cache": True}), (cached, {"use_kv_cache": False}), (plain, {})]:
        idx, logits = generate_recording_logits(model, prompt, steps, top_k=1, **kwargs)
        assert (logits - expected).abs().max().item() <= 1e-4
        assert torch.equal(idx, expected_idx)


def test_every_generate_starts_from_an_empty_cache():
    # 连着生成两次、第二次换一个更短的提示词：第二次的 logits 也必须与重算一致（缓存被清空了，而不是接着用）
    reference, _, cached = twin_models(n_layer=2)
    cached.generate(torch.randint(VOCAB, (3, 9)), 5, top_k=1)
    prompt = torch.randint(VOCAB, (3, 4))
    expected_idx, expected = reference_greedy(reference, prompt, 10)
    idx, logits = generate_recording_logits(cached, prompt, 10, top_k=1)
    assert (logits - expected).abs().max().item() <= 1e-4
    assert torch.equal(idx, expected_idx)


def cache_lengths(model):
    return {m.cache_k.shape[1] for m in model.modules() if isinstance(m, KV.Head)}


def test_prefill_fills_every_layer_then_decode_adds_one_position():
    _, _, cached = twin_models(n_layer=3)
    prompt = torch.randint(VOCAB, (1, 7))
    cached.generate(prompt, 1)
    assert cache_lengths(cached) == {7}
    cached.generate(prompt, 2)
    assert cache_lengths(cached) == {8}
    # 预填充是一次前向、喂整段提示词；之后每次前向只喂一个新字
    fed = []
    hook = cached.token_embedding_table.register_forward_hook(lambda m, inputs, out: fed.append(inputs[0].shape[1]))
    cached.generate(prompt, 4)
    hook.remove()
    assert fed == [7, 1, 1, 1]


def test_cache_never_grows_past_block_size():
    _, _, cached = twin_models(n_layer=2)
    lengths = []
    hook = cached.lm_head.register_forward_hook(lambda *args: lengths.append(max(cache_lengths(cached) or {0})))
    cached.generate(torch.randint(VOCAB, (1, BLOCK_SIZE - 3)), 2 * BLOCK_SIZE)
    hook.remove()
    assert max(lengths) == BLOCK_SIZE


@pytest.mark.parametrize("model_index", [1, 2], ids=["babygpt_sample", "kvcache"])
def test_top_k_never_samples_outside_the_top_k(model_index):
    model = twin_models(n_layer=2)[model_index]
    torch.manual_seed(1)
    prompt = torch.randint(VOCAB, (4, 3))
    idx, logits = generate_recording_logits(model, prompt, 40, temperature=2.0, top_k=5)
    chosen = idx[:, 3:]  # (B, 40)
    allowed = torch.topk(logits, 5, dim=-1).indices  # (40, B, 5)
    assert (allowed == chosen.T.unsqueeze(-1)).any(dim=-1).all()
    # 温度 2、top_k=5 时确实抽到了不止一个候选（不然和贪心没区别，测试就没意义）
    assert (chosen != logits.argmax(dim=-1).T).any()


def test_large_top_k_and_streaming_callback():
    _, plain, cached = twin_models(n_layer=1)
    for model in (plain, cached):
        streamed = []
        idx = model.generate(torch.randint(VOCAB, (1, 4)), 6, temperature=0.7, top_k=10 * VOCAB,
                             on_token=streamed.append)
        assert idx.shape == (1, 10)
        assert torch.equal(torch.cat(streamed, dim=1), idx[:, 4:])

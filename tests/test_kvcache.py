"""KV 缓存的约定：任何提示词、任何长度，每一步的 logits 都与 v11 自己的模型（不用缓存、每步全部重算）一致。"""
import pytest
import torch

from conftest import load_script

V11 = load_script("babygpt_v11_hyper_params.py")
SAMPLER = load_script("babygpt_sample_with_kvcache.py")
BLOCK_SIZE = 16
VOCAB = 50


def twin_models(n_layer, seed=0):
    """同一组随机权重分别装进 v11 的模型和带缓存的模型，都切到 eval()。"""
    torch.manual_seed(seed)
    args = dict(vocab_size=VOCAB, n_embd=24, n_head=3, n_layer=n_layer, block_size=BLOCK_SIZE, dropout=0.2)
    reference = V11.BabyGPT(**args).eval()
    cached = SAMPLER.BabyGPT(**args)
    cached.load_state_dict(reference.state_dict())
    return reference, cached.eval()


def greedy(next_logits, prompt, steps):
    """贪心解码：返回生成的字和每一步的 logits。"""
    idx, all_logits = prompt, []
    for _ in range(steps):
        logits = next_logits(idx)  # (B, vocab_size)
        all_logits.append(logits)
        idx = torch.cat((idx, logits.argmax(dim=-1, keepdim=True)), dim=1)
    return idx, torch.stack(all_logits)


@pytest.mark.parametrize("n_layer", [1, 3])
@pytest.mark.parametrize("prompt_len", [1, 7, BLOCK_SIZE + 5])
def test_cached_logits_and_greedy_output_equal_full_recompute(n_layer, prompt_len):
    reference, cached = twin_models(n_layer)
    prompt = torch.randint(VOCAB, (2, prompt_len))
    with torch.no_grad():
        expected_idx, expected = greedy(lambda idx: reference(idx[:, -BLOCK_SIZE:])[0][:, -1, :], prompt, 2 * BLOCK_SIZE)
    got_idx, got = greedy(lambda idx: cached.next_logits(idx, use_kv_cache=True), prompt, 2 * BLOCK_SIZE)
    assert (got - expected).abs().max().item() <= 1e-4
    assert torch.equal(got_idx, expected_idx)
    uncached_idx, _ = greedy(lambda idx: cached.next_logits(idx, use_kv_cache=False), prompt, 2 * BLOCK_SIZE)
    assert torch.equal(uncached_idx, expected_idx)


def cache_lengths(model):
    return {m.cache_k.shape[1] for m in model.modules() if isinstance(m, SAMPLER.Head)}


def test_prefill_fills_every_layer_then_decode_adds_one_position():
    _, cached = twin_models(n_layer=3)
    prompt = torch.randint(VOCAB, (1, 7))
    cached.next_logits(prompt)
    assert cache_lengths(cached) == {7}
    cached.next_logits(torch.cat((prompt, torch.tensor([[3]])), dim=1))
    assert cache_lengths(cached) == {8}


def test_cache_never_grows_past_block_size_and_restarts_for_a_new_prompt():
    _, cached = twin_models(n_layer=2)
    idx = torch.randint(VOCAB, (1, BLOCK_SIZE - 1))
    for _ in range(BLOCK_SIZE):
        idx = torch.cat((idx, cached.next_logits(idx).argmax(-1, keepdim=True)), dim=1)
        assert max(cache_lengths(cached)) <= BLOCK_SIZE
    cached.next_logits(torch.randint(VOCAB, (1, 3)))
    assert cache_lengths(cached) == {3}


def test_top_k_one_is_greedy_and_large_top_k_is_allowed():
    reference, cached = twin_models(n_layer=2)
    prompt = torch.randint(VOCAB, (1, 4))
    with torch.no_grad():
        expected_idx, _ = greedy(lambda idx: reference(idx[:, -BLOCK_SIZE:])[0][:, -1, :], prompt, 20)
    tokens = torch.cat(list(cached.generate(prompt, 20, temperature=1.0, top_k=1)), dim=1)
    assert torch.equal(tokens, expected_idx[:, 4:])
    assert len(list(cached.generate(prompt, 5, temperature=0.7, top_k=10 * VOCAB))) == 5

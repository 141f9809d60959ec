"""The official `openai` Python client against a running `flowlm serve`.

Run through scripts/test-openai-client.sh (which installs the client in a virtual environment,
starts the server on a free port and passes --base-url). Exits non-zero on the first failure.
"""

import argparse

import openai


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8080/v1")
    args = parser.parse_args()
    client = openai.OpenAI(base_url=args.base_url, api_key="unused")

    models = [m.id for m in client.models.list().data]
    assert models, "no model listed"
    model = models[0]
    print(f"models: {models}")

    # Completions, whole and streamed: the same text.
    whole = client.completions.create(model=model, prompt="ROMEO:", max_tokens=32, temperature=0, seed=1)
    text = whole.choices[0].text
    assert text, "empty completion"
    assert whole.choices[0].finish_reason in ("stop", "length")
    assert whole.usage.completion_tokens > 0
    print(f"completion: {text!r}")
    streamed = ""
    finish = None
    for chunk in client.completions.create(
        model=model, prompt="ROMEO:", max_tokens=32, temperature=0, seed=1, stream=True
    ):
        streamed += chunk.choices[0].text
        finish = chunk.choices[0].finish_reason or finish
    assert streamed == text, f"streamed {streamed!r} != {text!r}"
    assert finish == whole.choices[0].finish_reason
    print("streamed completion: identical text")

    # Chat, whole and streamed (the step events of stream_steps are named SSE events, which the
    # client must skip).
    messages = [{"role": "user", "content": "Who is there?"}]
    chat = client.chat.completions.create(model=model, messages=messages, max_tokens=16, temperature=0)
    content = chat.choices[0].message.content
    assert chat.choices[0].message.role == "assistant"
    print(f"chat: {content!r}")
    pieces = []
    for chunk in client.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=16,
        temperature=0,
        stream=True,
        extra_body={"stream_steps": True, "sampler": "llada", "steps": 16},
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == content, f"{''.join(pieces)!r} != {content!r}"
    print("streamed chat with step events: identical text")

    # Diffusion extensions through extra_body.
    cached = client.completions.create(
        model=model,
        prompt="ROMEO:",
        max_tokens=64,
        temperature=0,
        extra_body={"block_length": 32, "cache": "dual", "threshold": 0.9, "remasking": "low-confidence"},
    )
    print(f"dual cache + threshold: {cached.choices[0].text!r}")

    # An invalid value: a 400 naming the field.
    try:
        client.completions.create(model=model, prompt="x", max_tokens=0)
    except openai.BadRequestError as error:
        assert error.body["param"] == "max_tokens", error.body
        print(f"error case: 400 {error.body['message']!r}")
    else:
        raise AssertionError("max_tokens=0 was accepted")
    print("openai client: all checks passed")


if __name__ == "__main__":
    main()

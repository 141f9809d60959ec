"""Throughput and latency of `flowlm serve` at several numbers of concurrent clients.

Each client sends `--requests` completions one after another (stdlib only: threads and
urllib). Prints, per concurrency: requests/s, generated tokens/s, and latency p50/p95/max.

    flowlm serve --port 8080 &
    python3 benches/serve_load.py --url http://127.0.0.1:8080 --clients 1,8,100
"""

import argparse
import json
import statistics
import threading
import time
import urllib.error
import urllib.request


def one_request(url: str, body: dict) -> tuple[float, int, int]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        url + "/v1/completions", data=data, headers={"Content-Type": "application/json"}
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            answer = json.load(response)
            status = response.status
    except urllib.error.HTTPError as error:
        return time.perf_counter() - started, error.code, 0
    return time.perf_counter() - started, status, answer["usage"]["completion_tokens"]


def run(url: str, clients: int, requests: int, body: dict) -> dict:
    latencies, statuses, tokens = [], [], []
    lock = threading.Lock()

    def client(index: int) -> None:
        for r in range(requests):
            request = dict(body, prompt=f"{body['prompt']} {index}-{r}")
            latency, status, count = one_request(url, request)
            with lock:
                latencies.append(latency)
                statuses.append(status)
                tokens.append(count)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "clients": clients,
        "requests": len(latencies),
        "ok": statuses.count(200),
        "requests_per_s": len(latencies) / wall,
        "tokens_per_s": sum(tokens) / wall,
        "p50": statistics.median(latencies),
        "p95": latencies[max(0, -(-95 * len(latencies) // 100) - 1)],
        "max": latencies[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--clients", default="1,8,100", help="comma-separated concurrencies")
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--remasking", default=None, help="low-confidence or random (default: the model's)")
    args = parser.parse_args()
    body = {
        "prompt": "ROMEO:",
        "max_tokens": args.max_tokens,
        "steps": args.max_tokens,
        "temperature": 0,
    }
    if args.remasking:
        body["remasking"] = args.remasking
    print("| clients | requests (ok) | requests/s | tokens/s | latency p50 | p95 | max |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for clients in [int(c) for c in args.clients.split(",")]:
        r = run(args.url, clients, args.requests, body)
        print(
            f"| {r['clients']} | {r['requests']} ({r['ok']}) | {r['requests_per_s']:.2f} | "
            f"{r['tokens_per_s']:.1f} | {r['p50']:.2f} s | {r['p95']:.2f} s | {r['max']:.2f} s |"
        )


if __name__ == "__main__":
    main()

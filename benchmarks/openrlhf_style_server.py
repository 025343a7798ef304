"""An OpenRLHF-style reward server, as the baseline of ``bench_serve.py`` (OpenRLHF's own ``serve_rm`` needs CUDA).

It reproduces ``openrlhf.cli.serve_rm``'s behaviour: a FastAPI ``/get_reward`` whose async handler calls the
model synchronously (so the event loop serves one request at a time), tokenizing each request's queries with
padding and truncation to ``--max-len`` and running one padded forward per ``--batch-size`` chunk.

    python benchmarks/openrlhf_style_server.py --model MODEL_FOLDER --port 5000
"""

import argparse

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--max-len", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--bf16", action="store_true", help="bfloat16 weights (serve_rm's --bf16)")
    args = parser.parse_args()

    dtype = torch.bfloat16 if args.bf16 else torch.float32
    model = AutoModelForSequenceClassification.from_pretrained(args.model, dtype=dtype).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    app = FastAPI()

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.post("/get_reward")
    async def get_reward(request: Request):
        queries = (await request.json())["query"]
        size = args.batch_size or len(queries)
        scores = []
        with torch.no_grad():  # synchronous inside the async handler, as serve_rm does: one request at a time
            for i in range(0, len(queries), size):
                batch = tokenizer(queries[i : i + size], return_tensors="pt", padding=True, truncation=True, max_length=args.max_len)
                scores.extend(model(**batch).logits[:, 0].float().tolist())
        return JSONResponse({"rewards": scores})

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

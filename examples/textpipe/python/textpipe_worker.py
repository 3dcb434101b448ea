"""The `textpipe.count` kind in Python: ``tidemesh worker run textpipe_worker:worker`` (from this folder).

Counts the words of a text line by line: one partial result and one checkpoint per line, then
the totals and the most frequent words. The Node worker (`../node/worker.mjs`) implements the
same rules; both give byte-identical results, partials and checkpoints.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter

from textpipe.v1.textpipe_pb2 import CountRequest, CountResult, WordCount

from clients.sdk import Retryable, TaskContext, Worker

worker = Worker(
    os.environ.get("TIDEMESH_ENDPOINT", ""),
    name=os.environ.get("TEXTPIPE_WORKER_NAME", "textpipe-python"),
    labels={"lang": "python"},
    capacity=int(os.environ.get("TEXTPIPE_CAPACITY", "8")),
)


def words_of(line: str) -> list[str]:
    """Whitespace-split tokens, lower-cased, stripped of non-alphanumeric ends; empties dropped."""
    words = []
    for token in line.split():
        token = token.lower()
        start, end = 0, len(token)
        while start < end and not token[start].isalnum():
            start += 1
        while end > start and not token[end - 1].isalnum():
            end -= 1
        if end > start:
            words.append(token[start:end])
    return words


def top_words(counts: Counter[str], limit: int) -> list[WordCount]:
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [WordCount(word=word, count=count) for word, count in ranked[:limit]]


@worker.task("textpipe.count", input=CountRequest, output=CountResult)
async def count(request: CountRequest, ctx: TaskContext) -> CountResult:
    lines = request.text.split("\n") if request.text else []
    counts: Counter[str] = Counter()
    start = 0
    if ctx.resume_state is not None:
        state = json.loads(ctx.resume_state)
        start, counts = state["line"], Counter(state["counts"])
        ctx.log.info("resuming from a checkpoint at line %d", start)
    total = sum(counts.values())
    for index in range(start, len(lines)):
        if request.fail_first_attempt and ctx.attempt == 1 and index == 0:
            raise Retryable("first attempt fails on purpose")
        for word in words_of(lines[index]):
            counts[word] += 1
            total += 1
        # `index`: the partial's place in the step, so one an earlier attempt stored is not sent twice.
        await ctx.emit_partial(CountResult(lines=index + 1, words=total), (index + 1) / len(lines), index=index + 1)
        state = {"line": index + 1, "counts": dict(counts)}
        await ctx.checkpoint(json.dumps(state, sort_keys=True, separators=(",", ":")).encode())
        if request.line_delay_ms:
            await asyncio.sleep(request.line_delay_ms / 1000)
    return CountResult(lines=len(lines), words=total, top=top_words(counts, request.top or 3))

// The `textpipe.count` handler. The Python example worker implements the same rules; both must
// give byte-identical results and checkpoints, so every rule below is spelled out in Python terms.
import { setTimeout as sleep } from "node:timers/promises";
import { RetryableError, canonicalJson, compareCodePoints } from "../../../clients/node/src/index.js";

// Python's str.split() separators: Unicode whitespace (JS's \s lacks \x1c-\x1f and \x85, and adds \ufeff).
const WHITESPACE = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/u;
// Python's str.isalnum(): letters (L*) and numbers (N*).
const ALNUM = /^[\p{L}\p{N}]$/u;

/** The words of a line: whitespace-split tokens, lowercased, then stripped of non-alphanumeric ends; empties dropped. */
export function wordsOf(line) {
  const words = [];
  for (const token of line.split(WHITESPACE)) {
    const chars = [...token.toLowerCase()];
    let start = 0;
    let end = chars.length;
    while (start < end && !ALNUM.test(chars[start])) start += 1;
    while (end > start && !ALNUM.test(chars[end - 1])) end -= 1;
    if (end > start) words.push(chars.slice(start, end).join(""));
  }
  return words;
}

/** The lines of a text: split on "\n", none skipped; an empty text has none. */
export function linesOf(text) {
  return text === "" ? [] : text.split("\n");
}

/** The `limit` most frequent words: count descending, then word ascending by code point. */
export function topWords(counts, limit) {
  return Object.entries(counts)
    .sort(([wordA, countA], [wordB, countB]) => countB - countA || compareCodePoints(wordA, wordB))
    .slice(0, limit)
    .map(([word, count]) => ({ word, count }));
}

/** Handler for `textpipe.count`: CountRequest -> CountResult, one partial and one checkpoint per line. */
export async function count(request, ctx) {
  const lines = linesOf(request.text);
  const resume = ctx.resumeJson();
  let start = 0;
  const counts = {};
  if (resume !== undefined) {
    start = resume.line;
    Object.assign(counts, resume.counts);
  }
  let words = Object.values(counts).reduce((sum, n) => sum + n, 0);
  if (start > 0) ctx.log.info("resuming from a checkpoint", { line: start });
  for (let i = start; i < lines.length; i += 1) {
    if (request.failFirstAttempt && ctx.attempt === 1 && i === 0) {
      throw new RetryableError("first attempt fails on purpose"); // error_class "retryable"
    }
    for (const word of wordsOf(lines[i])) {
      counts[word] = (counts[word] ?? 0) + 1;
      words += 1;
    }
    // `i + 1`: the partial's place in the step, so one an earlier attempt stored is not sent twice.
    await ctx.emitPartial({ lines: i + 1, words }, (i + 1) / lines.length, i + 1);
    await ctx.checkpoint(canonicalJson({ line: i + 1, counts }));
    if (request.lineDelayMs) await sleep(request.lineDelayMs, undefined, { signal: ctx.signal });
  }
  return { lines: lines.length, words, top: topWords(counts, request.top || 3) };
}

// A pipeline's event stream that survives a dropped connection.
//
// A ticket is single-use, so EventSource's own reconnect (same URL, same
// ticket) cannot work: on any error the source is closed, a new ticket is
// asked for and a new source opened with `&after=<last id seen>`. Events are
// handed on in id order and each id at most once, so the page shows no gap
// and no duplicate. Listeners get events in batches; drawing is the caller's.

import { streamUrl } from "./api.js";

export const PIPELINE_EVENTS = [
  "PipelinePlanned", "EntryPlanned", "PipelineRunRequested", "RetryRequested", "PipelineStale",
  "CancelRequested", "LeaseAcquired", "LeaseRenewed", "PhaseStarted", "EntryDispatched",
  "CallDispatched", "EntryPublished", "EntryFailed", "EntrySkipped", "PhaseCompleted",
  "PipelineCompleted", "PipelineFailed", "PipelineCancelled",
];
export const TERMINAL = new Set(["PipelineCompleted", "PipelineFailed", "PipelineCancelled", "PipelineStale"]);

export class ResumableStream {
  constructor(url, { onEvents, onStatus, after = 0, closeOnTerminal = true } = {}) {
    this.url = url;
    this.onEvents = onEvents || (() => {});
    this.onStatus = onStatus || (() => {});
    this.lastId = after;
    this.received = 0; // distinct events handed on
    this.dropped = 0; // repeats seen after a resume, not handed on
    this.reconnects = 0;
    this.closeOnTerminal = closeOnTerminal;
    this.source = null;
    this.closed = false;
    this.pending = [];
    this.flushQueued = false;
    this.retryDelay = 250;
    this.lastType = null;
  }

  async open() {
    if (this.closed) return;
    let url;
    try {
      url = await streamUrl(this.url, this.lastId);
    } catch (err) {
      if ([401, 403, 404].includes(err.status)) {
        // the token was revoked or lost its rights: trying again cannot help
        this.closed = true;
        this.onStatus("stopped", err);
        return;
      }
      this.onStatus("reconnecting", err);
      this.later();
      return;
    }
    if (this.closed) return;
    const source = new EventSource(url);
    this.source = source;
    source.onopen = () => {
      this.retryDelay = 250;
      this.onStatus("live");
    };
    source.onerror = () => {
      source.close();
      if (this.source !== source || this.closed) return;
      this.source = null;
      if (this.closeOnTerminal && TERMINAL.has(this.lastType)) {
        // the server closes a stream after a terminal event that is its last one
        // (it replays past an earlier one, e.g. before a retry): the end, until resumed
        this.closed = true;
        this.onStatus("ended");
        return;
      }
      // cut off: a new ticket (a ticket is single-use) and on from the last id seen
      this.reconnects++;
      this.onStatus("reconnecting");
      this.later();
    };
    const take = (e) => this.take(e);
    for (const type of PIPELINE_EVENTS) source.addEventListener(type, take);
    source.onmessage = take; // (an event type this page does not know yet)
  }

  later() {
    if (this.closed) return;
    const delay = this.retryDelay;
    this.retryDelay = Math.min(this.retryDelay * 2, 3000);
    setTimeout(() => this.open(), delay);
  }

  take(e) {
    const id = Number(e.lastEventId);
    if (!Number.isFinite(id) || id <= this.lastId) {
      this.dropped++;
      return;
    }
    let data;
    try {
      data = JSON.parse(e.data);
    } catch {
      data = {};
    }
    this.lastId = id;
    this.received++;
    const type = e.type === "message" ? data.type : e.type;
    this.lastType = type;
    this.pending.push({ id, type, data });
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(() => this.flush());
    }
  }

  flush() {
    this.flushQueued = false;
    const batch = this.pending;
    this.pending = [];
    if (batch.length) this.onEvents(batch);
  }

  /** Open again after a terminal event (a retry or a run continues the same stream). */
  resume() {
    this.closed = false;
    if (!this.source) this.open();
  }

  stop() {
    if (this.source) this.source.close();
    this.source = null;
    this.closed = true;
  }
}

/** Call `draw` at most every `ms` milliseconds, in an animation frame. */
export function throttled(draw, ms = 250) {
  let queued = false;
  let last = 0;
  return () => {
    if (queued) return;
    queued = true;
    const wait = Math.max(0, last + ms - performance.now());
    setTimeout(() => requestAnimationFrame(() => {
      queued = false;
      last = performance.now();
      draw();
    }), wait);
  };
}

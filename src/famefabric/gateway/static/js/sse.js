// Server-sent events (text/event-stream) read from a fetch() body.
//
// EventSource cannot send an Authorization header or a POST body, so the page
// reads the stream itself: bytes -> lines -> events, as the HTML standard
// describes (fields "event" and "data"; comments and other fields ignored).

/** Split a stream of text chunks into events; feed() returns the events completed so far. */
export class EventStreamParser {
  constructor() {
    this.buffer = "";
    this.event = "";
    this.data = [];
  }

  /** @param {string} text @returns {{event: string, data: string}[]} */
  feed(text) {
    this.buffer += text;
    const events = [];
    let start = 0;
    for (;;) {
      const match = /\r\n|\r|\n/g;
      match.lastIndex = start;
      const found = match.exec(this.buffer);
      if (!found) break;
      // A lone "\r" at the very end may be half of "\r\n": wait for more.
      if (found[0] === "\r" && found.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(start, found.index);
      start = found.index + found[0].length;
      const event = this.line(line);
      if (event) events.push(event);
    }
    this.buffer = this.buffer.slice(start);
    return events;
  }

  line(line) {
    if (line === "") {
      if (this.data.length === 0) {
        this.event = "";
        return null;
      }
      const event = { event: this.event || "message", data: this.data.join("\n") };
      this.event = "";
      this.data = [];
      return event;
    }
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
    return null;
  }
}

/**
 * Yield the events of a fetch() Response body, parsed as JSON where they are.
 * @param {Response} response
 */
export async function* readEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const parser = new EventStreamParser();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      for (const event of parser.feed(decoder.decode(value, { stream: true }))) {
        yield parseData(event);
      }
    }
    for (const event of parser.feed(decoder.decode() + "\n\n")) yield parseData(event);
  } finally {
    reader.releaseLock();
  }
}

function parseData(event) {
  if (event.data === "[DONE]") return { event: "done", data: null };
  try {
    return { event: event.event, data: JSON.parse(event.data) };
  } catch {
    return { event: event.event, data: event.data };
  }
}

// The gateway's public HTTP API, as the page uses it: OpenAI's Conversations and
// Responses APIs plus the conversation list, with a bearer token.

import { readEvents } from "./sse.js";

/** A failed call: `message` is the line the page shows (the REPL's wording). */
export class ApiError extends Error {
  constructor(message, { status = 0, code = null, type = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.type = type;
  }
}

/** The text to show for an OpenAI-shaped error body (or whatever came back instead). */
export function errorMessage(body, status) {
  const error = body && typeof body === "object" ? body.error : null;
  if (error && typeof error.message === "string" && error.message) return error.message;
  if (typeof error === "string" && error) return error;
  if (body && typeof body.detail === "string") return body.detail;
  return `the gateway answered HTTP ${status}`;
}

export class Gateway {
  /**
   * @param {() => string | null} token returns the bearer token to send, if any
   */
  constructor(token) {
    this.token = token;
  }

  headers(extra = {}) {
    const headers = { Accept: "application/json", ...extra };
    const token = this.token();
    if (token) headers.Authorization = `Bearer ${token}`;
    return headers;
  }

  async call(method, path, body = undefined, { signal } = {}) {
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: this.headers(body === undefined ? {} : { "Content-Type": "application/json" }),
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
        cache: "no-store",
      });
    } catch (exc) {
      if (exc.name === "AbortError") throw exc;
      throw unreachable();
    }
    if (response.status === 204) return null;
    const parsed = await response.json().catch(() => null);
    if (!response.ok) throw failure(parsed, response);
    return parsed;
  }

  /** GET /v1/models: the agent addresses this user may talk to. */
  async models() {
    const body = await this.call("GET", "/v1/models");
    return (body?.data ?? []).map((model) => String(model.id));
  }

  /** GET /v1/conversations: this user's conversations, newest first. */
  async conversations({ limit = 100 } = {}) {
    const body = await this.call("GET", `/v1/conversations?limit=${limit}`);
    return body?.data ?? [];
  }

  conversation(id) {
    return this.call("GET", `/v1/conversations/${encodeURIComponent(id)}`);
  }

  /** GET /v1/conversations/{id}/items, every page, oldest first. */
  async items(id) {
    const all = [];
    let after = null;
    for (let page = 0; page < 50; page += 1) {
      const query = new URLSearchParams({ limit: "100", order: "asc" });
      if (after) query.set("after", after);
      const body = await this.call(
        "GET",
        `/v1/conversations/${encodeURIComponent(id)}/items?${query}`,
      );
      const data = body?.data ?? [];
      all.push(...data);
      if (!body?.has_more || data.length === 0) break;
      after = body.last_id ?? data[data.length - 1].id;
    }
    return all;
  }

  deleteConversation(id) {
    return this.call("DELETE", `/v1/conversations/${encodeURIComponent(id)}`);
  }

  /**
   * POST /v1/responses with stream: true; calls onDelta(text) for each piece.
   * Aborting `signal` closes the stream, which makes the gateway cancel the turn.
   * @returns {Promise<string>} the whole reply
   */
  async streamResponse({ model, input, conversation, instructions, signal, onDelta }) {
    const body = { model, input, conversation, stream: true };
    if (instructions) body.instructions = instructions;
    let response;
    try {
      response = await fetch("/v1/responses", {
        method: "POST",
        headers: this.headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
        body: JSON.stringify(body),
        signal,
        cache: "no-store",
      });
    } catch (exc) {
      if (exc.name === "AbortError") throw exc;
      throw unreachable();
    }
    if (!response.ok) {
      throw failure(await response.json().catch(() => null), response);
    }
    let text = "";
    try {
      for await (const { event, data } of readEvents(response)) {
        const type = (data && typeof data === "object" && data.type) || event;
        if (type === "response.output_text.delta") {
          text += data.delta;
          onDelta(data.delta, text);
        } else if (type === "error") {
          throw new ApiError(errorMessage({ error: data.error ?? data }, 0), {
            code: data.code ?? data.error?.code ?? null,
          });
        } else if (type === "response.failed" || type === "response.incomplete") {
          const error = data.response?.error ?? data.response?.incomplete_details;
          throw new ApiError(error?.message || error?.reason || "the reply failed", {
            code: error?.code ?? null,
          });
        } else if (type === "response.completed" || type === "done") {
          return text;
        }
      }
    } catch (exc) {
      if (exc.name === "AbortError" || exc instanceof ApiError) throw exc;
      throw new ApiError("the connection to the gateway broke during the reply; send the question again");
    }
    throw new ApiError("the reply ended before it was complete; send the question again");
  }
}

function unreachable() {
  return new ApiError(`the gateway at ${location.origin} is not reachable — is it running?`);
}

function failure(body, response) {
  const error = body && typeof body === "object" && body.error && typeof body.error === "object"
    ? body.error
    : {};
  return new ApiError(errorMessage(body, response.status), {
    status: response.status,
    code: error.code ?? null,
    type: error.type ?? null,
  });
}

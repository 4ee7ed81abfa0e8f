// The web chat: sign-in, the conversation list, one conversation, streaming turns.

import { ApiError, Gateway } from "./api.js";
import { forgetToken, loadToken, redeemLoginCode, saveToken, takeLinkToken, takeLoginCode } from "./auth.js";
import { renderInto } from "./render.js";

const DEFAULT_MODEL = "chat@fame.fabric";
const MODEL_KEY = "fame.model";
const TITLE_CHARS = 60;
const UNTITLED = "New chat";

const $ = (id) => document.getElementById(id);
const ui = {
  signin: $("signin"),
  signinForm: $("signin-form"),
  signinToken: $("signin-token"),
  signinRemember: $("signin-remember"),
  signinError: $("signin-error"),
  app: $("app"),
  list: $("conversation-list"),
  listEmpty: $("list-empty"),
  newChat: $("new-chat"),
  openSidebar: $("open-sidebar"),
  closeSidebar: $("close-sidebar"),
  signOut: $("sign-out"),
  title: $("chat-title"),
  model: $("model"),
  models: $("models"),
  newOptions: $("new-options"),
  systemPrompt: $("system-prompt"),
  messages: $("messages"),
  composer: $("composer"),
  input: $("input"),
  send: $("send"),
  stop: $("stop"),
};

const gateway = new Gateway(loadToken);
const state = {
  conversationId: null,
  turn: null, // the AbortController of the reply under way
  titles: new Map(),
  opening: 0, // counts conversation loads, so a slow one never overwrites a newer one
};

// -- small DOM helpers -------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function scrollToEnd() {
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

function addMessage(role, text) {
  const item = el("li", `message ${role}`);
  item.dataset.role = role;
  item.append(el("div", "who", role === "user" ? "You" : role === "system" ? "System prompt" : "Assistant"));
  const body = el("div", "body");
  if (role === "assistant") renderInto(body, text);
  else body.textContent = text;
  item.append(body);
  ui.messages.append(item);
  scrollToEnd();
  return item;
}

/** Show a failure as one line, worded as the REPL words it: "error: ...". */
function addError(message) {
  const line = el("li", "message");
  line.append(el("p", "error-line", `error: ${message}`));
  line.dataset.role = "error";
  ui.messages.append(line);
  scrollToEnd();
}

function describe(exc) {
  return exc instanceof ApiError ? exc.message : String(exc?.message || exc);
}

/** The gateway's rule for a title: the first user message, spaces collapsed, cut at 60. */
function titleFrom(text) {
  const line = text.split(/\s+/).filter(Boolean).join(" ");
  return line.length > TITLE_CHARS ? `${line.slice(0, TITLE_CHARS - 1)}…` : line;
}

/** The title a conversation object carries (the gateway's list adds `title`). */
function titleOf(conversation) {
  return conversation?.title || conversation?.metadata?.title || "";
}

// The agent address each conversation talks to is remembered in this browser (all
// its tabs), by conversation id; conversations made elsewhere use the default.
const AGENTS_KEY = "fame.agents";
const MAX_REMEMBERED = 200;

function rememberedAgent(id) {
  try {
    return JSON.parse(localStorage.getItem(AGENTS_KEY) || "{}")[id] || null;
  } catch {
    return null;
  }
}

function rememberAgent(id, model) {
  let agents;
  try {
    agents = JSON.parse(localStorage.getItem(AGENTS_KEY) || "{}");
  } catch {
    agents = {};
  }
  delete agents[id];
  agents[id] = model;
  const ids = Object.keys(agents);
  for (const old of ids.slice(0, Math.max(0, ids.length - MAX_REMEMBERED))) delete agents[old];
  localStorage.setItem(AGENTS_KEY, JSON.stringify(agents));
}

function forgetAgent(id) {
  try {
    const agents = JSON.parse(localStorage.getItem(AGENTS_KEY) || "{}");
    delete agents[id];
    localStorage.setItem(AGENTS_KEY, JSON.stringify(agents));
  } catch {
    localStorage.removeItem(AGENTS_KEY);
  }
}

function itemText(item) {
  const content = item?.content;
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  return content
    .map((part) => (typeof part === "string" ? part : typeof part?.text === "string" ? part.text : ""))
    .join("");
}

// -- the address bar: ?conversation=<id> ------------------------------------------------

function urlConversation() {
  return new URLSearchParams(location.search).get("conversation");
}

function setUrlConversation(id, { replace = false } = {}) {
  const query = new URLSearchParams(location.search);
  if (id) query.set("conversation", id);
  else query.delete("conversation");
  const url = `${location.pathname}${query.size ? `?${query}` : ""}`;
  if (url === `${location.pathname}${location.search}`) return;
  if (replace) history.replaceState({ conversation: id }, "", url);
  else history.pushState({ conversation: id }, "", url);
}

// -- sign-in -----------------------------------------------------------------------

function showSignin(message) {
  ui.app.hidden = true;
  ui.signin.hidden = false;
  ui.signinError.hidden = !message;
  ui.signinError.textContent = message ? `error: ${message}` : "";
  ui.signinToken.focus();
}

/** Check the token (or that none is needed) with GET /v1/models; start the chat if it passes. */
async function connect() {
  let models;
  try {
    models = await gateway.models();
  } catch (exc) {
    if (exc instanceof ApiError && exc.status === 401) {
      const had = loadToken();
      if (had) forgetToken();
      showSignin(had ? `${exc.message} — sign in again` : null);
      return false;
    }
    showSignin(describe(exc));
    return false;
  }
  ui.signin.hidden = true;
  ui.app.hidden = false;
  ui.signOut.hidden = !loadToken();
  fillModels(models);
  return true;
}

function fillModels(models) {
  ui.models.replaceChildren(...models.map((id) => Object.assign(el("option"), { value: id })));
  const saved = localStorage.getItem(MODEL_KEY);
  ui.model.value = saved || models[0] || DEFAULT_MODEL;
}

// -- the conversation list --------------------------------------------------------------

async function refreshList() {
  let conversations;
  try {
    conversations = await gateway.conversations();
  } catch (exc) {
    addError(describe(exc));
    return;
  }
  // The gateway lists the most recently active first.
  ui.list.replaceChildren(...conversations.map(listEntry));
  ui.listEmpty.hidden = conversations.length > 0;
  markCurrent();
  for (const conversation of conversations) {
    if (!titleOf(conversation)) fillTitle(conversation.id);
  }
}

function listEntry(conversation) {
  const item = el("li");
  item.dataset.id = conversation.id;
  const title = titleOf(conversation) || state.titles.get(conversation.id) || UNTITLED;
  state.titles.set(conversation.id, title);
  const link = el("a", "", title);
  link.href = `?conversation=${encodeURIComponent(conversation.id)}`;
  link.title = title;
  link.addEventListener("click", (event) => {
    event.preventDefault();
    closeSidebar();
    openConversation(conversation.id);
  });
  const remove = el("button", "delete", "×");
  remove.type = "button";
  remove.setAttribute("aria-label", `Delete “${title}”`);
  remove.addEventListener("click", () => deleteConversation(conversation.id));
  item.append(link, remove);
  return item;
}

/** A conversation whose metadata has no title is named after its first user message. */
async function fillTitle(id) {
  try {
    const body = await gateway.call("GET", `/v1/conversations/${encodeURIComponent(id)}/items?limit=5&order=asc`);
    const first = (body?.data ?? []).find((item) => item.role === "user");
    if (!first) return;
    const title = titleFrom(itemText(first));
    state.titles.set(id, title);
    const link = ui.list.querySelector(`li[data-id="${CSS.escape(id)}"] a`);
    if (link) link.textContent = link.title = title;
    if (state.conversationId === id) ui.title.textContent = title;
  } catch {
    // The list still works with the placeholder title.
  }
}

function markCurrent() {
  for (const item of ui.list.children) {
    item.setAttribute("aria-current", String(item.dataset.id === state.conversationId));
  }
}

async function deleteConversation(id) {
  const title = state.titles.get(id) || id;
  if (!confirm(`Delete “${title}”? This cannot be undone.`)) return;
  try {
    await gateway.deleteConversation(id);
  } catch (exc) {
    addError(describe(exc));
    return;
  }
  forgetAgent(id);
  if (state.conversationId === id) newChat();
  await refreshList();
}

// -- one conversation ------------------------------------------------------------------

function newChat({ push = true } = {}) {
  stopTurn();
  state.opening += 1;
  state.conversationId = null;
  if (push) setUrlConversation(null);
  ui.messages.replaceChildren();
  ui.title.textContent = UNTITLED;
  ui.newOptions.hidden = false;
  ui.model.disabled = false;
  markCurrent();
  ui.input.focus();
}

async function openConversation(id, { push = true } = {}) {
  stopTurn();
  const opening = ++state.opening;
  state.conversationId = id;
  if (push) setUrlConversation(id);
  ui.messages.replaceChildren();
  ui.newOptions.hidden = true;
  ui.title.textContent = state.titles.get(id) || "…";
  markCurrent();
  let conversation;
  let items;
  try {
    [conversation, items] = await Promise.all([gateway.conversation(id), gateway.items(id)]);
  } catch (exc) {
    if (opening !== state.opening) return;
    addError(exc instanceof ApiError && exc.status === 404 ? `no conversation ${id}: it was deleted or belongs to someone else` : describe(exc));
    return;
  }
  if (opening !== state.opening) return;
  const model = rememberedAgent(id);
  if (model) ui.model.value = model;
  for (const item of items) {
    if (item.type && item.type !== "message") continue;
    if (["user", "assistant", "system", "developer"].includes(item.role)) {
      addMessage(item.role === "developer" ? "system" : item.role, itemText(item));
    }
  }
  const first = items.find((item) => item.role === "user");
  const title = titleOf(conversation) || (first ? titleFrom(itemText(first)) : UNTITLED);
  state.titles.set(id, title);
  ui.title.textContent = title;
  ui.input.focus();
}

// -- a turn ------------------------------------------------------------------------------

function setBusy(busy) {
  ui.send.hidden = busy;
  ui.stop.hidden = !busy;
  ui.newChat.disabled = busy;
}

function stopTurn() {
  if (state.turn) state.turn.abort();
}

async function send(text) {
  if (state.turn || !text.trim()) return;
  const model = ui.model.value.trim() || DEFAULT_MODEL;
  localStorage.setItem(MODEL_KEY, model);
  const controller = new AbortController();
  state.turn = controller;
  setBusy(true);
  ui.input.value = "";
  autosize();
  addMessage("user", text);
  const reply = addMessage("assistant", "");
  reply.classList.add("streaming");
  const body = reply.querySelector(".body");
  let shown = "";
  let frame = 0;
  try {
    if (!state.conversationId) await startConversation(text, model, controller.signal);
    await gateway.streamResponse({
      model,
      input: text,
      conversation: state.conversationId,
      signal: controller.signal,
      onDelta: (_piece, whole) => {
        shown = whole;
        // Render at most once a frame: a fast stream would otherwise re-parse per piece.
        if (!frame) {
          frame = requestAnimationFrame(() => {
            frame = 0;
            renderInto(body, shown);
            scrollToEnd();
          });
        }
      },
    });
  } catch (exc) {
    if (exc.name === "AbortError") {
      reply.append(el("span", "stopped", "[stopped]"));
    } else {
      if (!shown) reply.remove();
      addError(describe(exc));
    }
  } finally {
    if (frame) cancelAnimationFrame(frame);
    if (shown) renderInto(body, shown);
    reply.classList.remove("streaming");
    reply.dataset.done = "true";
    state.turn = null;
    setBusy(false);
    scrollToEnd();
  }
}

async function startConversation(text, model, signal) {
  const prompt = ui.systemPrompt.value.trim();
  const title = titleFrom(text);
  const items = prompt ? [{ type: "message", role: "system", content: prompt }] : [];
  const conversation = await gateway.call("POST", "/v1/conversations", items.length ? { items } : {}, {
    signal,
  });
  state.conversationId = conversation.id;
  rememberAgent(conversation.id, model);
  state.titles.set(conversation.id, title);
  setUrlConversation(conversation.id);
  ui.title.textContent = title;
  ui.newOptions.hidden = true;
  ui.systemPrompt.value = "";
  if (prompt) ui.messages.prepend(addMessage("system", prompt));
  refreshList();
}

// -- wiring --------------------------------------------------------------------------------

function autosize() {
  ui.input.style.height = "auto";
  ui.input.style.height = `${Math.min(ui.input.scrollHeight + 2, window.innerHeight * 0.4)}px`;
}

function closeSidebar() {
  ui.app.classList.remove("list-open");
}

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  send(ui.input.value);
});
ui.input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send(ui.input.value);
  }
});
ui.input.addEventListener("input", autosize);
ui.stop.addEventListener("click", stopTurn);
ui.newChat.addEventListener("click", () => {
  closeSidebar();
  newChat();
});
ui.openSidebar.addEventListener("click", () => ui.app.classList.add("list-open"));
ui.closeSidebar.addEventListener("click", closeSidebar);
ui.model.addEventListener("change", () => localStorage.setItem(MODEL_KEY, ui.model.value.trim()));
ui.signOut.addEventListener("click", () => {
  stopTurn();
  forgetToken();
  showSignin(null);
});
ui.signinForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = ui.signinToken.value.trim();
  if (!token) return;
  saveToken(token, { remember: ui.signinRemember.checked });
  ui.signinToken.value = "";
  if (await connect()) await start();
});
window.addEventListener("popstate", () => {
  const id = urlConversation();
  if (id) openConversation(id, { push: false });
  else newChat({ push: false });
});

async function start() {
  await refreshList();
  const id = urlConversation();
  if (id) await openConversation(id, { push: false });
  else newChat({ push: false });
  document.body.dataset.ready = "true";
}

async function boot() {
  const linked = takeLinkToken();
  if (linked) saveToken(linked);
  const code = takeLoginCode();
  if (code) {
    try {
      saveToken(await redeemLoginCode(code));
    } catch (exc) {
      showSignin(exc.message);
      return;
    }
  }
  if (await connect()) await start();
}

boot();

// Markdown to safe DOM: marked writes HTML, DOMPurify removes anything active
// (scripts, event handlers, javascript: and other non-web URLs, forms, frames)
// before the browser parses it into the page.

import { Marked } from "../vendor/marked.esm.js";
import DOMPurify from "../vendor/purify.es.mjs";

const markdown = new Marked({ gfm: true, breaks: false, async: false });

const purify = DOMPurify(window);
purify.setConfig({
  USE_PROFILES: { html: true },
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "object", "embed"],
  FORBID_ATTR: ["style"],
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#)/i,
  RETURN_DOM_FRAGMENT: true,
});
// Links open elsewhere and tell the target nothing about this page.
purify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

/** Render markdown text to a sanitized DocumentFragment. */
export function renderMarkdown(text) {
  const html = markdown.parse(String(text ?? ""));
  return purify.sanitize(html);
}

/** Replace `element`'s content with the rendered markdown `text`. */
export function renderInto(element, text) {
  element.replaceChildren(renderMarkdown(text));
}

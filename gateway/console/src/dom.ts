type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined>;

/**
 * Creates an element with attributes and children. Text always goes in as text nodes, never
 * as HTML, so nothing a job carries (a title, a file name, an error) can become markup; the
 * page's Trusted Types policy would refuse an HTML string anyway.
 */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    el.setAttribute(name, value === true ? '' : String(value));
  }
  el.append(...children.filter((c): c is Node | string => c !== null && c !== undefined && c !== false));
  return el;
}

/** The element with this id, of this type; a page without it is a build mistake. */
export function byId<T extends HTMLElement>(id: string, type: { new (): T; prototype: T }): T {
  const el = document.getElementById(id);
  if (!(el instanceof type)) throw new Error(`the page has no ${type.name} #${id}`);
  return el;
}

/** Text for screen readers only (e.g. which job a "Download" button belongs to). */
export const hidden = (text: string): HTMLSpanElement => h('span', { class: 'visually-hidden' }, text);

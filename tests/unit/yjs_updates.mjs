// Updates written by real Yjs, one JSON line each: {"name": ..., "update": base64}.
// A document using every kind of content Yjs has, so that tests/unit/test_yupdate.py can check
// that the server's strict reader (waystation.server.sync.yupdate) accepts all of them.
// Run from the repository root: node tests/unit/yjs_updates.mjs
//
// With the argument "count" it reads base64 updates instead, one a line, and answers each with
// what Yjs's own decoder finds in it: {"structs": n, "deleted_ranges": n} or {"error": "..."}.
import * as readline from "node:readline";
import * as Y from "yjs";

if (process.argv[2] === "count") {
  for await (const line of readline.createInterface({ input: process.stdin })) {
    let answer;
    try {
      const { structs, ds } = Y.decodeUpdate(Buffer.from(line, "base64"));
      const deleted_ranges = [...ds.clients.values()].reduce((sum, ranges) => sum + ranges.length, 0);
      answer = { structs: structs.length, deleted_ranges };
    } catch (error) {
      answer = { error: String(error) };
    }
    process.stdout.write(JSON.stringify(answer) + "\n");
  }
  process.exit(0);
}

const say = (name, update) =>
  process.stdout.write(JSON.stringify({ name, update: Buffer.from(update).toString("base64") }) + "\n");

const doc = new Y.Doc();
const updates = [];
doc.on("update", (update) => updates.push(update));

// Text: strings (with characters outside the BMP), formatting, embeds, deletions
const text = doc.getText("text");
doc.transact(() => {
  text.insert(0, "hello wörld 😀 ");
  text.format(0, 5, { bold: true, link: { href: "https://example.org", n: 1.5 } });
  text.insertEmbed(6, { image: "data:,x", size: [1, 2] });
  text.insert(text.length, "italic", { italic: true, weight: null });
});
text.delete(2, 3);

// Map and Array: every lib0 Any value, binaries, nested Y types
const map = doc.getMap("map");
const anyValue = {
  undef: undefined, nil: null, small: 7, negative: -300000, big: 2 ** 40, float32: 1.5,
  float64: Math.PI, bigint: 2n ** 62n, no: false, yes: true, str: "é", bytes: new Uint8Array([0, 1, 255]),
  nested: { list: [[1, [2, [3]]], {}, []] },
};
doc.transact(() => {
  for (const [key, value] of Object.entries(anyValue)) map.set(key, value);
  map.set("all", anyValue);
  map.set("binary", new Uint8Array([9, 8, 7]));
  map.set("inner", new Y.Map([["k", "v"], ["deeper", new Y.Array()]]));
});
map.set("small", 8); // overwrites: the old item is deleted
map.delete("nil");
const array = doc.getArray("array");
array.insert(0, [1, "two", null, [undefined], new Uint8Array([5]), { three: [3] }, new Y.Text("nested text")]);
array.push([new Y.Array(), new Y.Map()]);
array.get(7).insert(0, ["in a nested array"]);
array.delete(1, 2);

// XML: elements with attributes, hooks, text with formatting, a fragment
const xml = doc.getXmlFragment("xml");
const paragraph = new Y.XmlElement("p");
const xmlText = new Y.XmlText("xml text");
paragraph.insert(0, [xmlText, new Y.XmlHook("hook-name")]);
xml.insert(0, [paragraph, new Y.XmlElement("hr")]);
paragraph.setAttribute("class", "lead");
xmlText.format(0, 3, { em: {} });
xml.get(0).get(1).set("hook-key", "hook value");
xml.delete(1, 1);

// A subdocument, and a legacy JSON item (Yjs still reads ContentJSON; nothing writes it now)
const sub = new Y.Doc({ autoLoad: true });
map.set("subdoc", sub);
const legacy = doc.getMap("legacy");
doc.transact((tr) => {
  const id = Y.createID(doc.clientID, Y.getState(doc.store, doc.clientID));
  new Y.Item(id, null, null, null, null, legacy, "json", new Y.ContentJSON([{ a: [1, "x"] }, undefined, null])).integrate(tr, 0);
});

// A second client's concurrent edit, and a deletion of a whole nested type (its items are GC'd)
const other = new Y.Doc();
Y.applyUpdate(other, Y.encodeStateAsUpdate(doc));
other.getText("text").insert(0, "other: ");
Y.applyUpdate(doc, Y.encodeStateAsUpdate(other, Y.encodeStateVector(doc)));
map.delete("inner");

say("full state", Y.encodeStateAsUpdate(doc));
say("full state of the other client", Y.encodeStateAsUpdate(other));
say("since the other client's state", Y.encodeStateAsUpdate(doc, Y.encodeStateVector(other)));
say("empty document", Y.encodeStateAsUpdate(new Y.Doc()));
updates.forEach((update, i) => say(`update ${i}`, update));
say("all updates merged", Y.mergeUpdates(updates));
// merging updates with a gap between them writes a Skip struct
say("updates merged around a gap", Y.mergeUpdates([updates[0], ...updates.slice(2)]));
say("subdocument", Y.encodeStateAsUpdate(sub));

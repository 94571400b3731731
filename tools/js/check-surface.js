// The SDKs' JavaScript against their hand-written .d.ts, at run time: every export, class
// member and Room method the types declare exists in the module, and every public member the
// module has is declared. tsc's checkJs checks how the code uses types; it cannot see that a
// declared method is missing (or renamed) in the implementation. Run by `make js-check`.
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { readFileSync } from "node:fs";
import ts from "typescript";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const MODULES = [
  ["web_client/sdk/roomserver.js", "web_client/sdk/roomserver.d.ts"],
  ["sdk-node/index.js", "sdk-node/index.d.ts"],
];

/** Exported values and, per exported class, its members (with interface merges) and string-union aliases. */
function declared(file) {
  const src = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.ES2022, true);
  const values = new Set();
  const members = new Map();
  const unions = new Map();
  const bases = new Map();
  const exported = (node) => node.modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
  // class -> member name -> "method" | "property" (properties are per-instance fields)
  const add = (cls, name, kind = "method") => {
    if (!members.has(cls)) members.set(cls, new Map());
    members.get(cls).set(name, kind);
  };
  for (const node of src.statements) {
    if (!exported(node)) continue;
    if (ts.isClassDeclaration(node) && node.name) {
      values.add(node.name.text);
      const base = node.heritageClauses?.[0]?.types[0]?.expression.getText(src);
      if (base) bases.set(node.name.text, base);
      for (const m of node.members) {
        if (m.name && ts.isIdentifier(m.name) && !ts.isConstructorDeclaration(m)) {
          add(node.name.text, m.name.text, ts.isPropertyDeclaration(m) ? "property" : "method");
        }
      }
    } else if (ts.isFunctionDeclaration(node) && node.name) {
      values.add(node.name.text);
    } else if (ts.isVariableStatement(node)) {
      for (const d of node.declarationList.declarations) values.add(d.name.getText(src));
    } else if (ts.isTypeAliasDeclaration(node) && ts.isUnionTypeNode(node.type)) {
      const names = node.type.types.filter((t) => ts.isLiteralTypeNode(t) && ts.isStringLiteral(t.literal));
      unions.set(node.name.text, names.map((t) => t.literal.text));
    }
  }
  for (const [cls, base] of bases) for (const [n, kind] of members.get(base) || []) add(cls, n, kind);
  // `interface Room extends RoomOps {}` with RoomOps = {[K in RoomMethodName]: …}: Room has those names.
  if (members.has("Room") && unions.has("RoomMethodName")) for (const n of unions.get("RoomMethodName")) add("Room", n);
  return { values, members };
}

function publicMembers(cls) {
  const names = new Set();
  for (let proto = cls.prototype; proto && proto !== Object.prototype && proto !== Error.prototype; proto = Object.getPrototypeOf(proto)) {
    for (const n of Object.getOwnPropertyNames(proto)) if (n !== "constructor" && !n.startsWith("_")) names.add(n);
  }
  return names;
}

const problems = [];
for (const [js, dts] of MODULES) {
  const mod = await import(pathToFileURL(path.join(root, js)).href);
  const { values, members } = declared(path.join(root, dts));
  for (const name of values) if (!(name in mod)) problems.push(`${js}: ${name} is declared but not exported`);
  for (const name of Object.keys(mod)) if (!values.has(name)) problems.push(`${js}: export ${name} is not declared in ${dts}`);
  for (const [cls, names] of members) {
    if (typeof mod[cls] !== "function") continue;
    const have = publicMembers(mod[cls]);
    // Fields set in the constructor (state, id, …) are not on the prototype: methods only.
    for (const [n, kind] of names) {
      if (kind === "method" && !have.has(n)) problems.push(`${js}: ${cls}.${n} is declared but not implemented`);
    }
    for (const n of have) if (!names.has(n)) problems.push(`${js}: ${cls}.${n} is not declared in ${dts}`);
  }
}

if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log(`check-surface: ${MODULES.length} modules match their declarations`);

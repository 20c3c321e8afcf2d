/**
 * What every rendered file of every fixture must (not) contain, whatever family made it.
 */
import { describe, expect, it } from "vitest";
import { fixtureNames, renderFixture } from "./helpers/fixtures.js";

// The IDs of ../shared/docs/errata.md (NGX-01, SD-04, PG-09, ...) and "errata 12": useful in
// source comments and test titles, noise in an operator's config that ships without that document.
const ERRATUM = /\b(?:errata|(?:INST|NGX|SD|PG|MQ|HAP|UFW|BK|UP|LR|CR|RD|DC|TLS|ENV|S-[A-Z]+)-\d{2})\b/;

describe("rendered output", () => {
  it.each(fixtureNames())("%s: no file names an erratum ID", (name) => {
    const hits = [...renderFixture(name)].flatMap(([path, file]) =>
      file.content.split("\n").flatMap((line, i) => (ERRATUM.test(line) ? [`${path}:${i + 1}: ${line.trim()}`] : [])),
    );
    expect(hits).toEqual([]);
  });
});

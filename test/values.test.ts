/**
 * The network validator behind site.admin_allow: the address forms nginx's `allow` reads
 * (RFC 4291 text forms for IPv6), and the mistakes it must refuse rather than pass to nginx.
 */
import { describe, expect, it } from "vitest";
import { networkProblem } from "../src/model/values.js";

describe("networkProblem", () => {
  it.each([
    "10.8.0.0/24",
    "192.0.2.7",
    "192.0.2.7/32",
    "0.0.0.0/0",
    "::1",
    "::1/128",
    "::/0",
    "2001:db8::/32",
    "2001:DB8:5::/48",
    "fe80::1:2",
    "1:2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7::",
    "::ffff:192.0.2.1",
    "64:ff9b::192.0.2.0/120",
  ])("accepts %s", (text) => {
    expect(networkProblem(text)).toBeUndefined();
  });

  it.each([
    ["10.8.0.1/24", "address bits set beyond its /24"],
    ["2001:db8::1/64", "address bits set beyond its /64"],
    ["10.8.0.0/33", "from 0 to 32"],
    ["2001:db8::/129", "from 0 to 128"],
    ["10.8.0.0/024", "from 0 to 32"],
    ["10.8.0.0/24/8", "more than one '/'"],
    ["256.1.1.1", "not an IPv4 or IPv6"],
    ["10.8.0", "not an IPv4 or IPv6"],
    ["1::2::3", "not an IPv4 or IPv6"],
    ["1:2:3:4:5:6:7:8:9", "not an IPv4 or IPv6"],
    ["1:2:3:4:5:6:7", "not an IPv4 or IPv6"],
    ["1:2:3:4:5:6:7:8::", "not an IPv4 or IPv6"],
    [":::", "not an IPv4 or IPv6"],
    ["12345::", "not an IPv4 or IPv6"],
    ["::ffff:192.0.2.256", "not an IPv4 or IPv6"],
    ["1:2:3:4:5:6:7:192.0.2.1", "not an IPv4 or IPv6"],
    ["", "not an IPv4 or IPv6"],
  ])("refuses %s", (text, problem) => {
    expect(networkProblem(text)).toContain(problem);
  });
});

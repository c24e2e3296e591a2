import { canonicalString, computeSignature, encodeValue, formatExpires, parseCloudStackDate, signRequest } from "../../hypervisor/cloudstack/signing";
import { expectedSignature, verifyRequest } from "../support/cloudstack/verify";

describe("CloudStack request signing", () => {
  test("matches the example in CloudStack's developer guide (listUsers, Python walkthrough)", () => {
    const params = {
      apikey: "plgWJfZK4gyS3mOMTVmjUVg-X-jlWlnfaUJ9GAbBbf9EdM-kAYMmAiLqzzq1ElZLYq_u38zCm0bewzGUdP66mg",
      command: "listUsers",
      response: "json",
    };
    const secret = "VDaACYb0LV9eNjTetIOElcVQkvJck_J_QljX_FcHRj87ZKiy0z0ty0ZsYBkoXkY9b7eq1EhwJaw7FF3akA3KBQ";
    expect(canonicalString(params)).toBe(
      "apikey=plgwjfzk4gys3momtvmjuvg-x-jlwlnfauj9gabbbf9edm-kaymmailqzzq1elzlyq_u38zcm0bewzgudp66mg&command=listusers&response=json",
    );
    expect(computeSignature(params, secret)).toBe("TTpdDq/7j/J58XCRHomKoQXEQds=");
  });

  test("hand-computed vector: spaces as %20, Java URLEncoder's reserved set, version 3 fields (openssl dgst -sha1 -hmac)", () => {
    const params = {
      zoneid: "z-1",
      command: "deployVirtualMachine",
      apikey: "AbC-123_x",
      displayname: "web server (1)*~!'",
      userdata: "aGVsbG8gd29ybGQ=",
      response: "json",
      signatureversion: "3",
      expires: "2024-05-01T12:00:00+0000",
    };
    expect(canonicalString(params)).toBe(
      "apikey=abc-123_x&command=deployvirtualmachine&displayname=web%20server%20%281%29*%7e%21%27&expires=2024-05-01t12%3a00%3a00%2b0000&response=json&signatureversion=3&userdata=agvsbg8gd29ybgq%3d&zoneid=z-1",
    );
    expect(computeSignature(params, "sEcReT/Key+1=")).toBe("/pAgvqg3kCxLSqOmx32qiUljQto=");
  });

  test("encodeValue follows java.net.URLEncoder except space", () => {
    expect(encodeValue("a b+c/d=e&f*g~h!i'j(k)l.m-n_o")).toBe("a%20b%2Bc%2Fd%3De%26f*g%7Eh%21i%27j%28k%29l.m-n_o");
    expect(encodeValue("é")).toBe("%C3%A9");
  });

  test("signRequest adds apikey, response=json, signatureversion=3 and a future expires; the server-side check accepts it", () => {
    const now = new Date("2024-05-01T12:00:00Z");
    const signed = signRequest("listZones", { ZoneId: "abc" }, { apiKey: "k", secretKey: "s", now, ttlSeconds: 60 });
    expect(signed).toMatchObject({ command: "listZones", response: "json", apikey: "k", signatureversion: "3", expires: "2024-05-01T12:01:00+0000", zoneid: "abc" });
    const m = new Map(Object.entries(signed));
    expect(signed.signature).toBe(expectedSignature(m, "s"));
    expect(verifyRequest(m, (k) => (k === "k" ? "s" : undefined), now)).toEqual({ ok: true, apiKey: "k" });
    expect(verifyRequest(m, () => "wrong", now)).toEqual({ ok: false, reason: "signature mismatch" });
    expect(verifyRequest(m, () => "s", new Date("2024-05-01T12:02:00Z"))).toEqual({ ok: false, reason: "request expired" });
  });

  test("dates: expires format and CloudStack's response timestamps", () => {
    expect(formatExpires(new Date("2011-10-10T06:30:00Z"))).toBe("2011-10-10T06:30:00+0000");
    expect(parseCloudStackDate("2011-10-10T12:00:00+0530")?.toISOString()).toBe("2011-10-10T06:30:00.000Z");
    expect(parseCloudStackDate("nonsense")).toBeUndefined();
  });
});

/**
 * A TCP proxy whose link can be cut like a network partition: cut() stops forwarding in both
 * directions without closing anything (packets vanish, calls hang until their deadlines, as when
 * a cable is pulled), and new connections are accepted but go nowhere; heal() closes the stalled
 * connections (as TCP would eventually) and forwards again. Used to cut one agent off from etcd
 * while its host and guest keep running.
 */
import * as net from "net";

export interface CuttableLink {
  /** The URL to give the client instead of the target's. */
  url: string;
  cut(): void;
  heal(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(target: string): Promise<CuttableLink> {
  const t = new URL(target);
  let cut = false;
  const pairs = new Set<[net.Socket, net.Socket]>();
  const server = net.createServer((client) => {
    if (cut) {
      client.pause();
      client.on("error", () => undefined);
      pairs.add([client, client]);
      return;
    }
    const upstream = net.connect(Number(t.port), t.hostname);
    const pair: [net.Socket, net.Socket] = [client, upstream];
    pairs.add(pair);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
    client.on("data", (d) => {
      if (!cut) upstream.write(d);
    });
    upstream.on("data", (d) => {
      if (!cut) client.write(d);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `${t.protocol}//127.0.0.1:${port}`,
    cut: () => {
      cut = true;
    },
    heal: () => {
      cut = false;
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      pairs.clear();
    },
    close: async () => {
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

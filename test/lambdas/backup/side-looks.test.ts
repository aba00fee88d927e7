import type { Client } from 'pg';
import { SideLooks } from '../../../lambdas/backup/lock-wait';
import { testCluster } from '../../support/cluster';

// The side connection a backup attempt's watches share (lock-wait.ts), on the test cluster.
describe('SideLooks', () => {
  const connection = () => {
    const cluster = testCluster();
    return { host: cluster.host, port: cluster.port, user: cluster.user, database: 'postgres' };
  };
  const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
  const backendPid = async (client: Client): Promise<number> => (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;

  it("a look asked for while another watch's runs follows it on the same connection, never skipped; a watch that left has its waiting look dropped", async () => {
    // Arrange: three watches; the first one's look takes 300 ms
    const looks = new SideLooks(connection());
    const [slow, quick, gone] = [{}, {}, {}];
    const leaves = [looks.join(slow), looks.join(quick), looks.join(gone)];
    const pids: Record<string, number> = {};
    const failed: string[] = [];
    try {
      // Act: each asks while the slow one looks; `gone` leaves before its turn
      looks.look(slow, async (client) => void (await client.query('SELECT pg_sleep(0.3)'), (pids.slow = await backendPid(client))), () => failed.push('slow'));
      looks.look(quick, async (client) => void (pids.quick = await backendPid(client)), () => failed.push('quick'));
      looks.look(gone, async (client) => void (pids.gone = await backendPid(client)), () => failed.push('gone'));
      await leaves[2]();
      const deadline = Date.now() + 5000;
      while (pids.quick === undefined && Date.now() < deadline) await sleep(20);
      await sleep(100);

      // Assert
      expect(failed).toEqual([]);
      expect(pids.quick).toBe(pids.slow);
      expect(pids.gone).toBeUndefined();
      expect(looks.closed).toBe(false);
    } finally {
      await Promise.all(leaves.map((leave) => leave()));
    }
    expect(looks.closed).toBe(true);
  });
});

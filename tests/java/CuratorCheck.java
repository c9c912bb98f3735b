// Runs Apache Curator's own JsonInstanceSerializer (Debian libcurator-discovery-java) against scout's curator
// codec, used by tests/lua/18_codec_curator_java_spec.lua.
//   java CuratorCheck decode FILE...   -> parses each file as Curator does, prints "== FILE" and then one
//                                        "field=value" per line (stdin when no FILE is given)
//   java CuratorCheck encode HOST PORT -> prints the JSON Curator writes for a Spring-style instance
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.util.Map;
import java.util.TreeMap;

import org.apache.curator.x.discovery.ServiceInstance;
import org.apache.curator.x.discovery.ServiceType;
import org.apache.curator.x.discovery.UriSpec;
import org.apache.curator.x.discovery.details.JsonInstanceSerializer;

public class CuratorCheck {
    public static void main(String[] args) throws Exception {
        JsonInstanceSerializer<Object> ser = new JsonInstanceSerializer<>(Object.class);
        if (args.length > 0 && args[0].equals("encode")) {
            org.springframework.cloud.zookeeper.discovery.ZookeeperInstance p =
                new org.springframework.cloud.zookeeper.discovery.ZookeeperInstance();
            p.id = "orders-1";
            p.name = "orders";
            p.metadata.put("zone", "a");
            p.metadata.put("instance_status", "UP");
            ServiceInstance<Object> si = ServiceInstance.builder()
                .name("orders").id("0e8a1c1e-7a53-4bbd-9a35-1b8a4f6b6c01").address(args[1])
                .port(Integer.parseInt(args[2])).payload(p).registrationTimeUTC(1628750040704L)
                .serviceType(ServiceType.DYNAMIC).uriSpec(new UriSpec("{scheme}://{address}:{port}")).build();
            System.out.print(new String(ser.serialize(si), "UTF-8"));
            return;
        }
        if (args.length <= 1) {
            print(ser, readAll(System.in));
            return;
        }
        for (int i = 1; i < args.length; i++) {
            System.out.println("== " + args[i]);
            try (InputStream in = new java.io.FileInputStream(args[i])) {
                print(ser, readAll(in));
            } catch (Exception e) {
                System.out.println("error=" + e.getClass().getSimpleName());
                System.err.println(args[i] + ": " + e);
            }
        }
    }

    private static byte[] readAll(InputStream in) throws Exception {
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        byte[] b = new byte[8192];
        int n;
        while ((n = in.read(b)) > 0) buf.write(b, 0, n);
        return buf.toByteArray();
    }

    private static void print(JsonInstanceSerializer<Object> ser, byte[] bytes) throws Exception {
        ServiceInstance<Object> si = ser.deserialize(bytes);
        System.out.println("name=" + si.getName());
        System.out.println("id=" + si.getId());
        System.out.println("address=" + si.getAddress());
        System.out.println("port=" + si.getPort());
        System.out.println("sslPort=" + si.getSslPort());
        System.out.println("registrationTimeUTC=" + si.getRegistrationTimeUTC());
        System.out.println("serviceType=" + si.getServiceType());
        System.out.println("enabled=" + si.isEnabled());
        System.out.println("uri=" + (si.getUriSpec() == null ? "null" : si.buildUriSpec()));
        Object p = si.getPayload();
        System.out.println("payloadClass=" + (p == null ? "null" : p.getClass().getName()));
        Map<String, String> meta = null;
        if (p instanceof org.springframework.cloud.zookeeper.discovery.ZookeeperInstance) {
            org.springframework.cloud.zookeeper.discovery.ZookeeperInstance z =
                (org.springframework.cloud.zookeeper.discovery.ZookeeperInstance) p;
            System.out.println("payloadId=" + z.id);
            System.out.println("payloadName=" + z.name);
            meta = z.metadata;
        } else if (p instanceof org.apache.dubbo.registry.zookeeper.ZookeeperInstance) {
            org.apache.dubbo.registry.zookeeper.ZookeeperInstance z =
                (org.apache.dubbo.registry.zookeeper.ZookeeperInstance) p;
            System.out.println("payloadId=" + z.id);
            System.out.println("payloadName=" + z.name);
            meta = z.metadata;
        }
        if (meta != null) {
            for (Map.Entry<String, String> e : new TreeMap<>(meta).entrySet()) {
                System.out.println("meta." + e.getKey() + "=" + e.getValue());
            }
        }
    }
}

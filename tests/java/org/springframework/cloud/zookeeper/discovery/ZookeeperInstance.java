// Stand-in for Spring Cloud Zookeeper's payload class (same name and JSON shape: id, name, metadata), so Curator's
// Jackson can resolve the "@class" tag without Spring on the classpath. Test-only.
package org.springframework.cloud.zookeeper.discovery;

import java.util.HashMap;
import java.util.Map;

public class ZookeeperInstance {
    public String id;
    public String name;
    public Map<String, String> metadata = new HashMap<>();

    public ZookeeperInstance() {
    }
}

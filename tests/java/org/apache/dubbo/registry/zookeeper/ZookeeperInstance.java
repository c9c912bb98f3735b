// Stand-in for dubbo 3's payload class (same name and JSON shape: id, name, metadata). Test-only.
package org.apache.dubbo.registry.zookeeper;

import java.util.HashMap;
import java.util.Map;

public class ZookeeperInstance {
    public String id;
    public String name;
    public Map<String, String> metadata = new HashMap<>();

    public ZookeeperInstance() {
    }
}

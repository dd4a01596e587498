-- The function of order_enrichment.lua's connected streams: join two
-- order streams on the order id. Each side keeps what it has seen in a
-- ValueState until the other side's record with the same id arrives, then
-- emits the pair, printed as the tutorial's Java classes print.
local cstream = require("cstream")

local function java_string(s) return "'" .. s .. "'" end

local OrderInfo1 = {
  __tostring = function(o)
    return string.format("OrderInfo1{orderId=%d, productName=%s, price=%s}",
      o.order_id, java_string(o.product_name), cstream.format(o.price))
  end,
}

local OrderInfo2 = {
  __tostring = function(o)
    return string.format("OrderInfo2{orderId=%d, orderDate=%s, address=%s}",
      o.order_id, java_string(o.order_date), java_string(o.address))
  end,
}

return {
  open = function(self, ctx)
    self.order_info1_state = ctx:get_state(cstream.value_state_descriptor("info1"))
    self.order_info2_state = ctx:get_state(cstream.value_state_descriptor("info2"))
  end,

  flat_map1 = function(self, order_info1, out)
    local value2 = self.order_info2_state:value()
    if value2 ~= nil then
      self.order_info2_state:clear()
      out:collect({ setmetatable(order_info1, OrderInfo1), setmetatable(value2, OrderInfo2) })
    else
      self.order_info1_state:update(order_info1)
    end
  end,

  flat_map2 = function(self, order_info2, out)
    local value1 = self.order_info1_state:value()
    if value1 ~= nil then
      self.order_info1_state:clear()
      out:collect({ setmetatable(value1, OrderInfo1), setmetatable(order_info2, OrderInfo2) })
    else
      self.order_info2_state:update(order_info2)
    end
  end,
}

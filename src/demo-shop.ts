// The web shop both demos replicate: its tables, seed data of a chosen size, and
// the transactions its web servers send (the write load). Written for every
// PostgreSQL major from 10: identity columns, jsonb, writable CTEs.
import type { Ids, Operation } from "./demo-kit";

export const SHOP_DDL = `
create table customers (
    id          bigint generated always as identity primary key,
    name        text not null,
    email       text not null unique,
    country     char(2) not null,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz
);
create table orders (
    id           bigint generated always as identity primary key,
    customer_id  bigint not null references customers,
    status       text not null check (status in ('new', 'paid', 'shipped', 'delivered', 'cancelled')),
    total        numeric(12,2) not null,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz
);
create index on orders (customer_id);
create table order_items (
    order_id    bigint not null references orders on delete cascade,
    line_no     int not null,
    product     text not null,
    qty         int not null check (qty > 0),
    unit_price  numeric(10,2) not null,
    primary key (order_id, line_no)
);
create table audit_log (
    id      bigint generated always as identity primary key,
    at      timestamptz not null default now(),
    actor   text not null,
    action  text not null,
    detail  jsonb not null
);`;

export const SHOP_TABLES = ["customers", "orders", "order_items", "audit_log"];

export interface ShopSize {
  customers: number;
  orders: number;
  audit: number;
}

/** Seed rows: orders with 1-5 items each, their totals, an audit trail. */
export function shopSeedSql(n: ShopSize): string {
  return `
insert into customers (name, email, country, created_at)
select 'Customer ' || g, 'customer' || g || '@example.com',
       (array['DE','FR','US','GB','NL','SE','JP','BR'])[1 + g % 8], now() - make_interval(mins => g)
  from generate_series(1, ${n.customers}) g;
insert into orders (customer_id, status, total, created_at)
select 1 + (g::bigint * 7919) % ${n.customers}, (array['new','paid','shipped','delivered','cancelled'])[1 + g % 5], 0,
       now() - make_interval(secs => g * 7)
  from generate_series(1, ${n.orders}) g;
insert into order_items (order_id, line_no, product, qty, unit_price)
select o.id, l, 'product-' || ((o.id * 31 + l) % 500), 1 + (o.id + l) % 5, ((o.id * 13 + l * 7) % 10000) / 100.0 + 1
  from orders o, generate_series(1, 1 + (o.id % 5)::int) l;
update orders o set total = s.total
  from (select order_id, sum(qty * unit_price) as total from order_items group by order_id) s
 where s.order_id = o.id;
insert into audit_log (at, actor, action, detail)
select now() - make_interval(secs => g), 'seed', 'order.created', jsonb_build_object('order_id', 1 + g % ${n.orders}, 'n', g)
  from generate_series(1, ${n.audit}) g;
analyze;`;
}

/** The ids the operations pick rows from, as the seed left them. */
export const shopIds = (n: ShopSize): Ids => ({ order: n.orders, customer: n.customers });

/**
 * What the shop's web servers do, by share of transactions: new orders with their
 * items, status changes, item changes, deleted orders, changed and new customers,
 * and the pruning of old audit rows.
 */
export const SHOP_OPERATIONS: Operation[] = [
  {
    weight: 40,
    async run({ c, ids, rnd, actor }) {
      const lines = rnd(4);
      const products: string[] = [];
      const qtys: number[] = [];
      const prices: string[] = [];
      let total = 0;
      for (let i = 0; i < lines; i++) {
        const price = rnd(20000) / 100;
        const q = rnd(3);
        products.push(`product-${rnd(500)}`);
        qtys.push(q);
        prices.push(price.toFixed(2));
        total += q * price;
      }
      const r = await c.query(
        `with o as (
           insert into orders (customer_id, status, total) values ($1, 'new', $2) returning id
         ), i as (
           insert into order_items (order_id, line_no, product, qty, unit_price)
           select o.id, u.n, u.product, u.qty, u.price
             from o, unnest($3::text[], $4::int[], $5::numeric[]) with ordinality as u(product, qty, price, n)
         )
         insert into audit_log (actor, action, detail)
         select $6, 'order.created', jsonb_build_object('order_id', o.id, 'total', $2::numeric) from o
         returning (detail->>'order_id')::bigint as id`,
        [rnd(ids.customer), total.toFixed(2), products, qtys, prices, actor],
      );
      ids.order = Math.max(ids.order, Number(r.rows[0].id));
    },
  },
  {
    weight: 25,
    run: ({ c, ids, rnd, actor }) =>
      c.query(
        `with u as (
           update orders
              set status = case status when 'new' then 'paid' when 'paid' then 'shipped' else 'delivered' end,
                  updated_at = now()
            where id = $1 and status in ('new', 'paid', 'shipped')
           returning id, status
         )
         insert into audit_log (actor, action, detail)
         select $2, 'order.' || u.status, jsonb_build_object('order_id', u.id) from u`,
        [rnd(ids.order), actor],
      ),
  },
  {
    weight: 10,
    run: ({ c, ids, rnd }) =>
      c.query(
        `with i as (
           update order_items set qty = qty + 1 where order_id = $1 and line_no = 1 returning order_id, unit_price
         )
         update orders o set total = o.total + i.unit_price, updated_at = now() from i where o.id = i.order_id`,
        [rnd(ids.order)],
      ),
  },
  {
    weight: 10,
    run: ({ c, ids, rnd, actor }) =>
      c.query(
        `with d as (delete from orders where id = $1 returning id, customer_id)
         insert into audit_log (actor, action, detail)
         select $2, 'order.deleted', jsonb_build_object('order_id', d.id, 'customer_id', d.customer_id) from d`,
        [rnd(ids.order), actor],
      ),
  },
  {
    weight: 10,
    run: ({ c, ids, rnd, committed }) =>
      c.query(
        `update customers set email = 'customer' || id || '.' || $2 || '@example.com', updated_at = now() where id = $1`,
        [rnd(ids.customer), committed],
      ),
  },
  {
    weight: 4.75,
    async run({ c, ids, rnd, committed }) {
      const r = await c.query(
        `insert into customers (name, email, country) values ($1, 'new-' || md5(random()::text || clock_timestamp()::text) || '@example.com', $2) returning id`,
        [`New customer ${committed}`, ["DE", "FR", "US", "GB"][rnd(4) - 1]],
      );
      ids.customer = Math.max(ids.customer, Number(r.rows[0].id));
    },
  },
  {
    // Housekeeping: the oldest audit rows go, 200 at a time.
    weight: 0.25,
    run: ({ c }) => c.query("delete from audit_log where id in (select id from audit_log order by id limit 200)"),
  },
];
